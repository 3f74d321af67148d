"""Train one experiment; resume state sits beside the outputs at an undeclared path (fcnlib.pipeline.experiment)."""

from fcnlib.pipeline.experiment import train_to
from fcnlib.pipeline.scripting import run


def main(job):
    train_to(dict(job.params.cfg), job.output.weights, job.output.log, device=job.params.device,
             gpus=int(job.params.get("gpus", 0) or 0))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
