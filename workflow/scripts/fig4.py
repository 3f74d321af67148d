"""Figure 4: image | FCN-32s | FCN-16s | FCN-8s | ground truth on validation images."""

from pathlib import Path

from fcnlib.pipeline.scripting import run
from fcnlib.report.figures import fig4_from_weights


def main(job):
    names = list(job.params.labels)
    fig4_from_weights(dict(zip(names, map(Path, job.input.weights), strict=True)), Path(job.input.dataset_json),
                      job.params.split, int(job.params.n), Path(job.output[0]), device=job.params.runtime["device"],
                      precision=job.params.runtime["amp"])


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
