"""Forward time (median after warm-up) and the net's parameters / receptive field / stride (Table 1)."""

from pathlib import Path

from fcnlib.eval.evaluate import time_forward
from fcnlib.files.io import atomic_write_json
from fcnlib.models import build_fcn, load_model, net_stats
from fcnlib.pipeline.scripting import run
from fcnlib.runtime.devices import job_device


def main(job):
    model, meta = load_model(Path(job.input[0]))
    t = job.params.timing
    rt = job.params.runtime
    with job_device(rt["device"], int(getattr(job, "resources", {}).get("gpu", 0) or 0)) as device:  # own GPU
        timing = time_forward(model, size=t["size"], runs=t["runs"], warmup=t["warmup"], device=device,
                              precision=rt["amp"], channels_last=rt["channels_last"])
    arch = dict(meta["arch"])
    # Table 1 describes the paper's nets, so the stats are computed at full width (and at the run's width).
    full = {k: v for k, v in arch.items() if k in ("variant", "backbone", "num_classes", "in_channels", "heads")}
    atomic_write_json(job.output[0], {"timing": timing, "stats": net_stats(build_fcn(**full, width=1.0)),
                                      "stats_run_width": net_stats(model), "arch": arch})


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
