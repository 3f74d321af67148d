"""Write the offline demo's synthetic datasets (real on-disk formats) and their manifest."""

from pathlib import Path

from fcnlib.demo import make_demo
from fcnlib.pipeline.scripting import run


def main(job):
    out = Path(job.output[0]).parent
    make_demo(out, width=float(job.params.width), released=list(job.params.get("released", [])),
              **dict(job.params.demo))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
