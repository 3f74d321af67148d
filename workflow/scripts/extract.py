"""Extract one archive safely (no paths leaving the target; temp dir, then rename)."""

from pathlib import Path

from fcnlib.archive import safe_extract
from fcnlib.scripting import run


def main(job):
    safe_extract(Path(job.input[0]), Path(job.output[0]))


run(main, globals().get("snakemake"))
