"""Encode every NYUD depth map of every split as HHA into a folder built whole; the manifest inside it."""

from pathlib import Path

from fcnlib.data.hha import encode_nyud
from fcnlib.pipeline.scripting import run


def main(job):
    encode_nyud(Path(job.input[0]), Path(job.output[0]), camera=job.params.camera,
                depth_scale=float(job.params.depth_scale), workers=job.threads)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
