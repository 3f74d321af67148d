"""Per-class IU bars for every model of one dataset."""

from pathlib import Path

from fcnlib.pipeline.scripting import run
from fcnlib.report.figures import per_class_bars


def main(job):
    per_class_bars(dict(zip(job.params.names, map(Path, job.input), strict=True)), Path(job.output[0]))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
