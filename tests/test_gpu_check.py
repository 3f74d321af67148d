"""bench/gpu_check.py on a machine without CUDA: it says so in its JSON; its optional-cases hook records a
failing case instead of stopping. (The cases themselves need a GPU: `--cpu-smoke` exercises them on a CPU.)"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]



def test_without_cuda_writes_not_run(bench_module, tmp_path, monkeypatch):
    gc = bench_module("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "o" / "gpu_check.json"
    assert gc.main(["--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["ran"] is False and "no CUDA" in r["reason"] and "cases" not in r


def test_extra_cases_hook_records_failures(bench_module, tmp_path):
    gc = bench_module("gpu_check")
    (tmp_path / "gpu_cases.py").write_text(
        "def good(device):\n    return {'device': str(device), 'x': 1}\n\n"
        "def bad(device):\n    raise RuntimeError('boom')\n\n"
        "CASES = [good, bad]\n")
    cases = gc.extra_cases(tmp_path / "gpu_cases.py")
    assert [f.__name__ for f in cases] == ["good", "bad"]
    assert gc.extra_cases(tmp_path / "absent.py") == []
    result = {"cases": {}}
    for fn in cases:
        gc.run_case(result, fn.__name__, lambda fn=fn: fn(torch.device("cpu")), deadline=float("inf"))
    assert result["cases"]["good"]["ok"] is True and result["cases"]["good"]["x"] == 1
    bad = result["cases"]["bad"]
    assert bad["ok"] is False and "boom" in bad["error"] and "RuntimeError" in bad["traceback"]
    gc.run_case(result, "late", lambda: {"ok": True}, deadline=0.0)
    assert result["cases"]["late"] == {"ok": False, "skipped": "time budget spent"}
