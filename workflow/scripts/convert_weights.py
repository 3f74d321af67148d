"""ImageNet classifier → fully convolutional backbone weights (with their preprocessing)."""

from pathlib import Path

from fcnlib.models import convert_imagenet_file
from fcnlib.scripting import run


def main(job):
    convert_imagenet_file(Path(job.input[0]), Path(job.output[0]), job.wildcards.backbone, job.params.format)


run(main, globals().get("snakemake"))
