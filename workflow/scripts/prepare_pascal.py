"""SBD merge and the paper's PASCAL splits → data/pascal/dataset.json."""

from pathlib import Path

from fcnlib.data.voc import prepare_pascal
from fcnlib.pipeline.scripting import run


def main(job):
    prepare_pascal(Path(job.output[0]).parent, voc2011_dir=Path(job.input.voc2011),
                   voc2012_dir=Path(job.input.voc2012), sbd_dir=Path(job.input.sbd),
                   seg11valid_list=Path(job.input.seg11valid), train_noval_list=Path(job.input.train_noval),
                   source=job.params.source, workers=job.threads)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
