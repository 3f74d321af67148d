"""Extract one archive safely (no paths leaving the target; temp dir, then rename)."""

from pathlib import Path

from fcnlib.files.archive import safe_extract
from fcnlib.pipeline.scripting import run


def main(job):
    safe_extract(Path(job.input[0]), Path(job.output[0]))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
