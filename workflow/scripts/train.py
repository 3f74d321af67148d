"""Train one experiment; resume state sits beside the outputs at an undeclared path."""

import shutil
from pathlib import Path

from fcnlib.distributed import run_training
from fcnlib.io import atomic_write
from fcnlib.scripting import run


def main(job):
    out = Path(job.output.weights)
    work = out.parent / ".train"  # undeclared: survives a failed/killed job, so the rerun resumes
    work.mkdir(parents=True, exist_ok=True)
    # 1 or N processes (one per claimed GPU; srun under a multi-task SLURM allocation): same command
    if not run_training(dict(job.params.cfg), work / "weights.pt", work / "resume.pt", work / "log.jsonl",
                        device=job.params.device, gpus=int(job.params.get("gpus", 0) or 0)):
        return  # a rank > 0 started by torchrun/srun around this script: rank 0 moves the outputs
    with open(work / "log.jsonl", "rb") as src, atomic_write(job.output.log, "wb") as dst:
        shutil.copyfileobj(src, dst)
    (work / "weights.pt").replace(out)  # declared weights last


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
