"""ImageNet classifier → fully convolutional backbone weights (with their preprocessing)."""

from pathlib import Path

from fcnlib.models import convert_imagenet_file
from fcnlib.pipeline.scripting import run


def main(job):
    convert_imagenet_file(Path(job.input[0]), Path(job.output[0]), job.wildcards.backbone, job.params.format,
                          width=float(job.params.width))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
