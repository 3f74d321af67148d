"""Train one experiment from its declared inputs; resume state sits beside the outputs at an undeclared path
(fcnlib.pipeline.experiment)."""

from fcnlib.pipeline import config as fcncfg
from fcnlib.pipeline.experiment import train_to, with_inputs
from fcnlib.pipeline.scripting import run


def main(job):
    cfg = with_inputs(dict(job.params.cfg), job.input.dataset_json, list(job.input.get("init") or []))
    # read from the config, not a param: switching a logger on must not rerun (retrain) every net
    train_to(cfg, job.output.weights, job.output.log, device=job.params.device,
             gpus=int(job.params.get("gpus", 0) or 0), tensorboard=fcncfg.tensorboard(getattr(job, "config", None)))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
