"""dvc.yaml on a tiny configuration, through the commands a user types: `dvc repro` (the demo only, never
the paper), a no-op repro, a param change, `dvc metrics show`, `dvc plots diff` between two commits,
`dvc exp run -S` after a hand-run Snakemake (nothing lost), `dvc exp show`, `dvc push`, a fresh clone,
`dvc pull`, re-extraction and `snakemake --touch` without retraining.

A throwaway git repository is built from the working tree's workflow files; its config/demo.yaml is
replaced by a two-experiment cut of config/test.yaml (FCN-32s → FCN-16s on demo PASCAL), so the real
`demo` stage of dvc.yaml runs the real Snakefile in a couple of minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
pytest.importorskip("dvc", reason="dvc is not installed (pip install 'fcnlib[dvc]')")

RUN = "runs/demo"
W32 = f"{RUN}/results/pascal/voc-fcn32s/weights.pt"
W16 = f"{RUN}/results/pascal/voc-fcn16s/weights.pt"
METRICS = f"{RUN}/results/metrics.json"
LIVE = f"{RUN}/results/dvclive/metrics.json"
SNAKE_ALL = ["snakemake", "all", "--configfile", "config/demo.yaml", "--directory", RUN, "--cores", "1"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("GIT_AUTHOR_NAME", "test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@example.org")
    env.setdefault("GIT_COMMITTER_NAME", "test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@example.org")
    return env


def run(cwd: Path, *cmd: str, timeout: int = 900, stdout_only: bool = False) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-6000:]}"
    return r.stdout if stdout_only else out


def run_json(cwd: Path, *cmd: str) -> dict:
    """A DVC command's --json output (its warnings go to stderr)."""
    return json.loads(run(cwd, *cmd, "--json", stdout_only=True))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def jobs_run(log: str) -> list[str]:
    """Rule names of the jobs a Snakemake run executed (excluding the `all` target)."""
    return [r for r in re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M) if r != "all"]


def _tiny_config() -> dict:
    c = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    c["name"] = "dvc-test"
    c["experiments"] = {k: v for k, v in c["experiments"].items() if k in ("voc-fcn32s", "voc-fcn16s")}
    c["tables"] = {"table2": {"FCN-32s": "voc-fcn32s", "FCN-16s": "voc-fcn16s"}}
    c["figures"] = {"learning_curves": {"staged": ["voc-fcn32s", "voc-fcn16s"]}}
    return c


def _make_repo(dest: Path) -> Path:
    """A git repository holding what a checkout of this project holds (no data, results, caches)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    for name in ("Snakefile", "workflow", "config", "fcnlib", "profiles", "dvc.yaml", "paper/dvc.yaml",
                 ".dvcignore", ".gitignore", "pyproject.toml", ".dvc/config", ".dvc/.gitignore", ".dvc/plots"):
        src, dst = REPO / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst))
    for keep in ("data/.gitkeep", "results/.gitkeep"):
        (dest / keep).parent.mkdir(exist_ok=True)
        (dest / keep).touch()
    (dest / "config" / "demo.yaml").write_text(yaml.safe_dump(_tiny_config(), sort_keys=False))
    run(dest, "git", "init", "-q")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-qm", "fcn-pipeline test checkout")
    return dest


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_repo(tmp_path_factory.mktemp("dvc") / "repo")


@pytest.fixture(scope="module")
def reproduced(repo: Path) -> tuple[Path, str]:
    log = run(repo, "dvc", "repro")  # what a user types: the root dvc.yaml, i.e. the demo only
    return repo, log


def test_repro_builds_everything_through_snakemake(reproduced: tuple[Path, str]) -> None:
    repo, log = reproduced
    assert "Running stage 'demo'" in log
    assert "paper" not in log and not (repo / "paper" / "dvc.lock").exists()  # the paper is asked for by name
    assert "paper/dvc.yaml:paper" in run(repo, "dvc", "stage", "list", "--all")
    for f in (W32, W16, f"{RUN}/results/tables.md", f"{RUN}/results/figures/curves_staged.png", METRICS,
              f"{RUN}/results/curves/loss.tsv", f"{RUN}/results/pascal/voc-fcn16s/dvclive/metrics.json"):
        assert (repo / f).stat().st_size > 0, f
    assert jobs_run(log).count("train") == 2
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["demo"]
    assert {o["path"] for o in lock["outs"]} == {f"{RUN}/{d}" for d in ("data", "results", "logs", "benchmarks")}
    # the data once: archives (demo_src and raw hold the same bytes: one cache entry), not the extracted trees
    assert (repo / RUN / "data" / "extracted" / "voc2012").is_dir()
    data_md5 = next(o["md5"] for o in lock["outs"] if o["path"] == f"{RUN}/data")  # "<hash>.dir"
    listing = json.loads((repo / ".dvc" / "cache" / "files" / "md5" / data_md5[:2] / data_md5[2:]).read_text())
    tracked = {e["relpath"] for e in listing}
    assert {"raw/VOCtrainval_11-May-2012.tar", "pascal/dataset.json"} <= tracked, sorted(tracked)[:20]
    assert not any(p.startswith("extracted/") for p in tracked)
    # the params DVC shows: the few dvc.yaml lists, not every key of the config
    assert set(lock["params"]["config/demo.yaml"]) == {"seed", "width", "training.amp", "recipes.demo.iterations",
                                                       "recipes.demo.lr.fcn32s"}
    assert run(repo, "dvc", "config", "cache.type").strip() == "reflink,copy"


def _quiet(repo: Path, *cmd: str) -> str:
    """A DVC command's output; it must print no warning (stderr empty)."""
    r = subprocess.run(cmd, cwd=repo, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and not r.stderr.strip(), f"{' '.join(cmd)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_metrics_show_is_labelled_and_quiet(reproduced: tuple[Path, str]) -> None:
    """Two rows: the headline nets' evaluation (with the run's source) and the run's DVCLive record (the lead
    net's training, replayed from its log: the same numbers as that training's own DVCLive folder)."""
    repo, _ = reproduced
    table = _quiet(repo, "dvc", "metrics", "show")
    rows = [line.split() for line in table.splitlines() if line.strip()]
    assert rows[0][:3] == ["Path", "mean_iu.voc-fcn16s", "source"], table  # PASCAL's headline: the end of its chain
    assert {"step", "train.loss", "val.mean_iu"} <= set(rows[0]), table
    assert [r[0] for r in rows[1:]] == [METRICS, LIVE], table
    assert rows[1][2] == "demo", table  # the path and the source say demo
    shown = run_json(repo, "dvc", "metrics", "show")[""]["data"]
    got = shown[METRICS]["data"]
    full = json.loads((repo / RUN / "results/pascal/voc-fcn16s/seg11valid/metrics.json").read_text())
    assert got["mean_iu"]["voc-fcn16s"] == round(100 * full["mean_iu"], 2)
    assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in got["mean_iu"].values()), got
    own = json.loads((repo / RUN / "results/pascal/voc-fcn16s/dvclive/metrics.json").read_text())
    assert shown[LIVE]["data"] == own and own["step"] == 6, (shown[LIVE], own)
    assert yaml.safe_load((repo / RUN / "results/dvclive/params.yaml").read_text()) == {
        "experiment": "voc-fcn16s", "dataset": "pascal", "source": "demo"}


def test_report_opens_on_the_tables(reproduced: tuple[Path, str], tmp_path: Path) -> None:
    """`snakemake --report` of the finished run: its landing page (the workflow description) holds the tables
    of tables.md and released.md as HTML tables, and links that open each figure in one click."""
    repo, _ = reproduced
    out = tmp_path / "report.html"
    run(repo, "snakemake", "--report", str(out), "--configfile", "config/demo.yaml", "--directory", RUN, "--nolock")
    page = out.read_text()
    landing = json.loads(re.search(r'var workflow_desc = (".*?(?<!\\)");', page, re.S).group(1))
    n_md = sum(line.startswith("|---") for f in ("tables.md", "released.md")
               for line in (repo / RUN / "results" / f).read_text().splitlines())
    assert landing.count("<table") == n_md > 1
    assert "Skip-architecture comparison" in landing and "DEMO" in landing
    figures = sorted(p.name for p in (repo / RUN / "results/figures").glob("*.png"))
    for name in figures:  # one click: a link calling the report's own result viewer
        assert f"showResultInfo('results/figures/{name}')" in landing, name


def test_second_repro_is_a_no_op(reproduced: tuple[Path, str]) -> None:
    repo, _ = reproduced
    before = (repo / W16).stat().st_mtime_ns
    log = run(repo, "dvc", "repro")
    assert "didn't change, skipping" in log and "Running stage" not in log, log
    assert (repo / W16).stat().st_mtime_ns == before
    assert "up to date" in run(repo, "dvc", "status", "demo")


def test_training_param_reruns_only_its_dependents(reproduced: tuple[Path, str]) -> None:
    repo, _ = reproduced
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "demo built")
    w32, w16 = sha(repo / W32), sha(repo / W16)
    t32 = (repo / W32).stat().st_mtime_ns

    cfg = yaml.safe_load((repo / "config/demo.yaml").read_text())
    cfg["experiments"]["voc-fcn16s"]["iterations"] = 4  # was the recipe's 6
    (repo / "config/demo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # not one of the few params dvc.yaml shows, but the file is a dep: the stage is out of date
    assert "config/demo.yaml" in run(repo, "dvc", "status", "demo")

    log = run(repo, "dvc", "repro")
    ran = jobs_run(log)
    # persist: true kept the outputs, so Snakemake reran FCN-16s and the report, nothing upstream
    assert ran.count("train") == 1 and ran.count("evaluate") == 1, ran
    assert not {"make_demo_sources", "download", "extract", "prepare_pascal", "convert_weights"} & set(ran), ran
    assert "exp=voc-fcn16s" in log and "exp=voc-fcn32s" not in log
    assert sha(repo / W32) == w32 and (repo / W32).stat().st_mtime_ns == t32
    assert sha(repo / W16) != w16
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "fcn16s: 4 iterations")

    # `dvc plots diff`: one chart per metric, every experiment's curve in it, the two commits overlaid
    plots = run_json(repo, "dvc", "plots", "diff", "HEAD~1", "HEAD")
    loss = plots["data"][f"{RUN}/results/curves/loss.tsv"]
    assert len(loss) == 1 and set(loss[0]["revisions"]) == {"HEAD~1", "HEAD"}
    points = loss[0]["content"]["data"]["values"]
    iters = {(rev, e): max(int(p["iter"]) for p in points if p["rev"] == rev and p["experiment"] == e)
             for rev in ("HEAD~1", "HEAD") for e in ("voc-fcn32s", "voc-fcn16s")}
    assert iters == {("HEAD~1", "voc-fcn32s"): 6, ("HEAD", "voc-fcn32s"): 6, ("HEAD~1", "voc-fcn16s"): 6,
                     ("HEAD", "voc-fcn16s"): 4}, iters
    assert loss[0]["content"]["encoding"]["color"]["field"] == "experiment"  # the overlay template
    assert f"{RUN}/results/curves/val.tsv" in plots["data"]
    _quiet(repo, "dvc", "plots", "show")
    page = (repo / "dvc_plots" / "index.html").read_text()
    assert not re.findall(r"<script[^>]*\bsrc=", page)  # vega inlined (.dvc/plots/offline.html), no CDN
    assert "dvc_plots" not in run(repo, "git", "status", "--porcelain")


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def test_plots_page_draws_its_charts_offline(reproduced: tuple[Path, str], tmp_path: Path) -> None:
    """`dvc plots show`'s page, opened in headless Chromium with every host name unresolvable (no network):
    each vega chart is drawn (a canvas each), because the page carries vega itself."""
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium to open the page in (apt install chromium)")
    repo, _ = reproduced
    out = tmp_path / "plots"
    shown = run(repo, "dvc", "plots", "show", "-o", str(out))
    assert str(out) in shown
    n_vega = (out / "index.html").read_text().split("<body>", 1)[1].count("vegaEmbed(")  # one call per chart
    assert n_vega >= 2, n_vega  # loss and validation curves (the figures are images)
    dom = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", (out / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<canvas") == n_vega, dom[-3000:]


def test_exp_run_after_a_hand_run_loses_nothing(reproduced: tuple[Path, str]) -> None:
    """`make demo`/a hand-run Snakemake writes runs/demo outside DVC; the Snakefile's onsuccess records it, so
    `dvc exp run -S` (which first restores the outs dvc.lock records, deleting anything unrecorded) keeps it;
    the experiment's own value reaches the run; `dvc exp show` stays narrow."""
    repo, _ = reproduced
    if run(repo, "git", "status", "--porcelain").strip():  # run alone: commit what is there
        run(repo, "git", "add", "-A")
        run(repo, "git", "commit", "-qm", "before the hand run")
    # by hand, outside DVC: one more evaluation (a file no DVC run has made), as a user would
    target = "results/pascal/voc-fcn32s/train/metrics.json"
    by_hand = f"{RUN}/{target}"
    log = run(repo, *SNAKE_ALL[:1], target, *SNAKE_ALL[2:])
    assert "recorded runs/demo in DVC (dvc.yaml:demo" in log, log[-2000:]
    made = sha(repo / by_hand)
    assert "up to date" in run(repo, "dvc", "status", "demo")
    w32 = sha(repo / W32)

    out = run(repo, "dvc", "exp", "run", "-S", "config/demo.yaml:recipes.demo.iterations=4")
    assert sha(repo / by_hand) == made, out[-3000:]  # restored from the record, not deleted
    assert sha(repo / W32) != w32  # retrained with 4 iterations
    assert max(d["iter"] for d in map(json.loads, (repo / RUN / "results/pascal/voc-fcn32s/log.jsonl")
                                      .read_text().splitlines())) == 4
    cfg = yaml.safe_load((repo / "config/demo.yaml").read_text())  # DVC rewrote it: still valid
    assert cfg["recipes"]["demo"]["iterations"] == 4 and cfg["training"]["amp"] == "fp32"

    shown = run_json(repo, "dvc", "exp", "show")
    exp = next(e for e in shown if e["rev"] != "workspace")["experiments"][0]["revs"][0]["data"]
    assert exp["params"]["config/demo.yaml"]["data"]["recipes"]["demo"]["iterations"] == 4
    table = run(repo, "dvc", "exp", "show", "--no-pager", "--md", stdout_only=True)
    header = next(line for line in table.splitlines() if "Experiment" in line)
    columns = [c.strip() for c in header.strip().strip("|").split("|")]
    assert len(columns) <= 25, columns
    names = {c.rsplit(":", 1)[-1] for c in columns}  # params are shown as <file>:<key>
    assert {"mean_iu.voc-fcn16s", "recipes.demo.iterations", "training.amp"} <= names, columns
    assert {"step", "train.loss", "val.mean_iu"} <= names, columns  # the lead net's DVCLive summary
    assert exp["metrics"][LIVE]["data"]["step"] == 4  # of the experiment's own training


def test_push_clone_pull_does_not_retrain(reproduced: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = reproduced
    if run(repo, "git", "status", "--porcelain").strip():  # run alone: commit the lock first
        run(repo, "git", "add", "-A")
        run(repo, "git", "commit", "-qm", "lock")
    run(repo, "dvc", "push")
    remote = repo / "dvc-remote"  # the default remote: ../dvc-remote from .dvc/config
    assert any(p.is_file() for p in remote.rglob("*"))

    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / W16).exists()
    # the clone's own ./dvc-remote is empty: point it at the shared one (per clone, not committed)
    run(clone, "dvc", "remote", "modify", "--local", "local", "url", str(remote))
    # the demo's outs: plain `dvc pull` also asks for the paper's (paper/dvc.yaml), never built here
    run(clone, "dvc", "pull", "dvc.yaml")
    assert sha(clone / W16) == sha(repo / W16) and sha(clone / W32) == sha(repo / W32)
    assert "up to date" in run(clone, "dvc", "status", "demo")
    assert not (clone / RUN / "data" / "extracted").exists()  # not cached: rebuilt from the archives

    # re-extract the pulled archives: extraction only, nothing downstream. (The demo's downloads are
    # file:// copies of the pulled data/demo_src whose mtimes the pull scrambled: recopied, same bytes;
    # the paper's downloads have no inputs and stay.)
    raw_before = {p.name: sha(p) for p in (clone / RUN / "data" / "raw").iterdir() if p.is_file()}
    restored = run(clone, *SNAKE_ALL[:1], "restore_extracted", *SNAKE_ALL[2:], "--rerun-triggers", "params")
    ran = set(jobs_run(restored)) - {"restore_extracted"}
    assert "extract" in ran and ran <= {"download", "extract"}, jobs_run(restored)
    assert {p.name: sha(p) for p in (clone / RUN / "data" / "raw").iterdir() if p.is_file()} == raw_before
    assert (clone / RUN / "data" / "extracted" / "voc2012").is_dir()
    # ... then, since checkout order scrambles mtimes, --touch re-stamps outputs in DAG order
    touched = run(clone, *SNAKE_ALL, "--touch")
    assert sha(clone / W16) == sha(repo / W16)
    assert "Touching output file" in touched or "steps (100%) done" in touched
    dry = run(clone, *SNAKE_ALL, "-n")
    assert "Nothing to be done" in dry, dry[-3000:]
    # the re-extraction appended to its jobs' logs (versioned provenance): DVC reruns the stage, whose
    # Snakemake run has nothing to do, and records the new logs; then the clone is up to date
    again = run(clone, "dvc", "repro")
    assert ("didn't change" in again or "Nothing to be done" in again) and not jobs_run(again), again[-3000:]
    assert "up to date" in run(clone, "dvc", "status", "demo")

    # --touch also recorded the clone's params: a later config edit reruns exactly what depends on it
    cfg = yaml.safe_load((clone / "config/demo.yaml").read_text())
    cfg["experiments"]["voc-fcn32s"]["iterations"] = 2
    (clone / "config/demo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    planned = jobs_run(run(clone, *SNAKE_ALL, "-n"))
    assert planned.count("train") == 2 and "prepare_pascal" not in planned, planned  # 32s, then 16s
