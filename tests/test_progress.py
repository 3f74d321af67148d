"""Progress in a log file: one complete line per interval (and at the end), never a frame per update."""

from __future__ import annotations

import io

from fcnlib.progress import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(monkeypatch, stream, interval: str | None, n: int = 5000) -> str:
    if interval is not None:
        monkeypatch.setenv("FCN_PROGRESS_INTERVAL", interval)
    bar = progress(total=n, desc="train", unit="it", file=stream)
    for i in range(1, n + 1):
        bar.update(1)
        if i % 10 == 0:  # the trainer's log step: a postfix must not force a frame
            bar.set_postfix(loss=f"{1.0 / i:.4g}", refresh=False)
    bar.close()
    return stream.getvalue()


def test_file_gets_lines_at_the_interval_only(monkeypatch):
    monkeypatch.delenv("FCN_PROGRESS", raising=False)
    out = _run(monkeypatch, io.StringIO(), "3600")
    assert "\r" not in out and out.endswith("\n")
    lines = out.splitlines()
    assert 1 <= len(lines) <= 3, lines  # the opening line and the final one, nothing per step
    assert "5000/5000" in lines[-1] and "loss=" in lines[-1]


def test_zero_interval_writes_complete_lines(monkeypatch):
    monkeypatch.delenv("FCN_PROGRESS", raising=False)
    out = _run(monkeypatch, io.StringIO(), "0", n=50)
    lines = out.splitlines()
    assert len(lines) > 10 and all(line.startswith("train:") for line in lines)
    assert "\r" not in out


def test_terminal_redraws_in_place_and_switch_disables(monkeypatch):
    monkeypatch.delenv("FCN_PROGRESS", raising=False)
    assert "\r" in _run(monkeypatch, _Tty(), None, n=20)
    monkeypatch.setenv("FCN_PROGRESS", "0")
    assert _run(monkeypatch, io.StringIO(), "0", n=20) == ""


def test_training_log_gets_no_frame_per_step(monkeypatch, tmp_path, capsys, one_thread):
    """The trainer with a log step every iteration: its stderr (a file under Snakemake) stays a few lines."""
    import helpers_train as toy

    from fcnlib import train as T

    monkeypatch.setenv("FCN_PROGRESS_INTERVAL", "3600")
    monkeypatch.delenv("FCN_PROGRESS", raising=False)
    ds = toy.make_dataset(tmp_path / "toy", n=2, sizes=((32, 32),))
    cfg = toy.make_cfg(ds, iterations=40, log_every=1, val_split=None, amp="off", channels_last=False)
    T.train(cfg, tmp_path / "w.pt", tmp_path / "r.pt", tmp_path / "log.jsonl", device="cpu")
    err = capsys.readouterr().err
    bar_lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("toy-fcn32s:")]
    assert 1 <= len(bar_lines) <= 3, bar_lines
    assert "40/40" in bar_lines[-1] and "loss=" in bar_lines[-1]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) >= 40  # the steps were logged
