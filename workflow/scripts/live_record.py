"""The run's DVCLive record: the lead net's training log replayed through DVCLive (what `dvc exp show` shows)."""

from fcnlib.pipeline.scripting import run
from fcnlib.report.summaries import write_live_record


def main(job):
    write_live_record(job.input.log, job.params.record, job.output[0])


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
