"""Score one trained net on one split: the four metrics, per-class IU, checksums → metrics.json."""

from pathlib import Path

from fcnlib.eval.evaluate import evaluate_file
from fcnlib.pipeline.scripting import run
from fcnlib.runtime.devices import job_device


def main(job):
    rt = job.params.runtime
    with job_device(rt["device"], int(getattr(job, "resources", {}).get("gpu", 0) or 0)) as device:  # own GPU
        evaluate_file(Path(job.input.weights), Path(job.input.dataset_json), job.wildcards.split,
                      out_json=Path(job.output[0]), device=device, precision=rt["amp"],
                      channels_last=rt["channels_last"], max_images=job.params.max_images,
                      config_hash=job.params.config_hash)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
