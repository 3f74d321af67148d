"""Glue for workflow/scripts/*.py: the same script runs under Snakemake's `script:` directive or on
its own from the shell (for debugging one step), and logs to the rule's log file either way.

Standalone use mirrors the rule's named inputs/outputs/params:

    python workflow/scripts/evaluate.py --input weights=results/pascal/voc-fcn8s/weights.pt \
        dataset_json=data/pascal/dataset.json --output results/pascal/voc-fcn8s/seg11valid/metrics.json \
        --params device='"cpu"' --wildcards split=seg11valid
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fcnlib.errors import one_line


class _Named(list):
    """A list whose named entries are also attributes (like snakemake.io.Namedlist)."""

    def __init__(self, positional: list[Any], named: dict[str, Any]):
        flat: list[Any] = list(positional)
        for v in named.values():
            flat.extend(v if isinstance(v, list) else [v])
        super().__init__(flat)
        self._named = named
        for k, v in named.items():
            setattr(self, k, v)

    def get(self, key: str, default: Any = None) -> Any:
        return self._named.get(key, default)

    def items(self) -> Iterator[tuple[str, Any]]:
        """(name, value) of the named entries, as snakemake's Namedlist.items()."""
        return iter(self._named.items())


def _parse_items(items: list[str], as_json: bool) -> _Named:
    positional, named = [], {}
    for item in items or []:
        if "=" in item:
            k, v = item.split("=", 1)
            named[k] = json.loads(v) if as_json else v
        else:
            positional.append(json.loads(item) if as_json else item)
    return _Named(positional, named)


def job_from_cli(argv: list[str] | None = None) -> SimpleNamespace:
    p = argparse.ArgumentParser(description="Run one workflow step outside Snakemake.")
    p.add_argument("--input", nargs="*", default=[], help="name=path or path")
    p.add_argument("--output", nargs="*", default=[], help="name=path or path")
    p.add_argument("--params", nargs="*", default=[], help="name=JSON value")
    p.add_argument("--wildcards", nargs="*", default=[], help="name=value")
    p.add_argument("--log", nargs="*", default=[], help="log file (default: stderr)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = p.parse_args(argv)
    return SimpleNamespace(input=_parse_items(a.input, False), output=_parse_items(a.output, False),
                           params=_parse_items(a.params, True), wildcards=_parse_items(a.wildcards, False),
                           log=_parse_items(a.log, False), threads=a.threads, rule="standalone")


@contextlib.contextmanager
def _logging_to(log: list[str]) -> Iterator[None]:
    if not log:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield
        return
    path = Path(log[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as f:
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = f
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            sys.stdout, sys.stderr = old_out, old_err


def run(main: Callable[[Any], None], smk: Any | None = None) -> None:
    """Run `main(job)`; an FcnError (or an OS, decoding or memory failure, fcnlib.errors.one_line) becomes one
    clear line on stderr (and in the log) and exit 1."""
    job = smk if smk is not None else job_from_cli()
    threads = int(getattr(job, "threads", 1) or 1)
    if "torch" in sys.modules:  # only steps that use torch pay for importing it
        sys.modules["torch"].set_num_threads(max(1, threads))
    t0 = time.time()
    log = list(getattr(job, "log", []) or [])
    try:
        with _logging_to(log):
            logging.info("rule %s started", getattr(job, "rule", "?"))
            main(job)
            logging.info("done in %.1f s", time.time() - t0)
    except Exception as exc:  # noqa: BLE001 - input/OS failures become one line; anything else re-raised
        e = one_line(exc)
        if e is None:
            raise
        if log:
            with open(log[0], "ab+") as f:
                # a progress bar (\r, no newline) may end the log: the error gets a line of its own
                end = f.seek(0, os.SEEK_END)
                f.seek(max(0, end - 1))
                sep = b"" if end == 0 or f.read(1) == b"\n" else b"\n"
                f.write(sep + f"error: {e}\n".encode())
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
