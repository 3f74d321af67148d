"""results/released.md and released.json: our scores of the released caffemodels beside the README's."""

from pathlib import Path

from fcnlib.eval.inference import device_name
from fcnlib.pipeline.scripting import run
from fcnlib.report.released import write_report


def main(job):
    records = [{"name": n, "metrics": Path(m)} for n, m in zip(job.params.names, job.input, strict=True)]
    header = dict(job.params.header, device=device_name("auto"))
    write_report(records, header, Path(job.output.md), Path(job.output.json))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
