"""Learning curves (loss and validation mean IU against iterations and wall time)."""

from pathlib import Path

from fcnlib.figures import learning_curves
from fcnlib.scripting import run


def main(job):
    logs = dict(zip(job.params.names, map(Path, job.input), strict=True))
    learning_curves(logs, Path(job.output[0]))


run(main, globals().get("snakemake"))
