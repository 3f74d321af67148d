"""SIFT Flow (33 semantic + 3 geometric classes) → data/siftflow/dataset.json."""

from pathlib import Path

from fcnlib.data.siftflow import prepare_siftflow
from fcnlib.pipeline.scripting import run


def main(job):
    lists = dict(zip(job.params.list_splits, map(Path, job.input.lists), strict=True)) or None
    prepare_siftflow(Path(job.output[0]).parent, Path(job.input.siftflow), lists=lists,
                     source=job.params.source, workers=job.threads)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
