"""NYUDv2 (FCN layout, Gupta crop, 40 classes) → data/nyud/dataset.json."""

from pathlib import Path

from fcnlib.data.nyud import prepare_nyud
from fcnlib.pipeline.scripting import run


def main(job):
    lists = dict(zip(job.params.list_splits, map(Path, job.input.lists), strict=True)) or None
    prepare_nyud(Path(job.output[0]).parent, Path(job.input.nyud), lists=lists,
                 source=job.params.source, workers=job.threads)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
