"""PASCAL-Context (59 classes + background) → data/context/dataset.json."""

from pathlib import Path

from fcnlib.data.context import prepare_context
from fcnlib.pipeline.scripting import run


def main(job):
    prepare_context(Path(job.output[0]).parent, Path(job.input.voc2010), Path(job.input.context),
                    Path(job.input.classes59), source=job.params.source, workers=job.threads)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
