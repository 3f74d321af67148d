"""Headline metrics (flat JSON, percent) and learning-curve TSVs for `dvc metrics show` / `dvc plots diff`."""

from fcnlib.pipeline.scripting import run
from fcnlib.report.summaries import write_summaries


def main(job):
    n = write_summaries(zip(job.input.metrics, job.output.metrics, strict=True),
                        zip(job.input.logs, job.output.loss, job.output.val, strict=True))
    print(f"{n} summary files written")


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
