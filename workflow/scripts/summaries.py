"""The run's metrics.json (validation mean IU of each dataset's headline net) and long learning-curve TSVs for DVC."""

from fcnlib.pipeline.scripting import run
from fcnlib.report.summaries import write_summaries


def main(job):
    write_summaries(dict(zip(job.params.names, job.input.metrics, strict=True)),
                    dict(zip(job.params.experiments, job.input.logs, strict=True)), job.params.source,
                    job.output.metrics, job.output.loss, job.output.val)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
