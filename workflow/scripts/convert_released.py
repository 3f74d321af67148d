"""One of the authors' released FCN caffemodels → our weights file (arch, preprocessing, classes in meta)."""

from pathlib import Path

from fcnlib.eval.released import convert
from fcnlib.pipeline.scripting import run


def main(job):
    convert(Path(job.input[0]), Path(job.output[0]), job.wildcards.name, width=float(job.params.width),
            data_source=job.params.data_source)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
