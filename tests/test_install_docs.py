"""The install lines the docs give name extras that exist and install what the line says: a SLURM line
must install the executor plugin (the `cluster` extra), a snakemake line snakemake (`workflow`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "profiles").rglob("*.yaml"))]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
INSTALL = re.compile(r"pip install[^\n]*?['\"]?(?:fcnlib|\.)\[([\w,]+)\]")


def _requirements(extras: list[str]) -> str:
    return " ".join(req for e in extras for req in EXTRAS[e])


def test_documented_extras_exist_and_install_what_the_line_promises():
    seen = 0
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for m in INSTALL.finditer(line):
                seen += 1
                extras = m.group(1).split(",")
                where = f"{doc.relative_to(ROOT)}:{n}"
                assert all(e in EXTRAS for e in extras), f"{where}: unknown extra in {extras}"
                reqs = _requirements(extras)
                if "slurm" in line.lower():
                    assert "snakemake-executor-plugin-slurm" in reqs, f"{where}: {extras} lacks the SLURM plugin"
                if "snakemake" in line.lower():
                    assert re.search(r"(^| )snakemake[<>=]", reqs), f"{where}: {extras} lacks snakemake"
    assert seen >= 3
