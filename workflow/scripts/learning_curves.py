"""Learning curves (loss and validation mean IU against iterations and wall time)."""

from pathlib import Path

from fcnlib.pipeline.scripting import run
from fcnlib.report.figures import learning_curves


def main(job):
    logs = dict(zip(job.params.names, map(Path, job.input), strict=True))
    learning_curves(logs, Path(job.output.iterations), x="iter")
    learning_curves(logs, Path(job.output.wall_time), x="time")  # Figure 5 compares wall time


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
