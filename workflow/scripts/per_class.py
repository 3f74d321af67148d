"""Per-class IU heatmap (class × net) for every model of one dataset."""

from pathlib import Path

from fcnlib.pipeline.scripting import run
from fcnlib.report.figures import per_class_heatmap


def main(job):
    per_class_heatmap(dict(zip(job.params.names, map(Path, job.input), strict=True)), Path(job.output[0]),
                      demo=bool(job.params.demo))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
