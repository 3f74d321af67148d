"""A results Markdown page (tables.md, released.md) as an HTML fragment for the Snakemake report."""

from fcnlib.pipeline.scripting import run
from fcnlib.report.mdhtml import write_html


def main(job):
    write_html(job.input[0], job.output[0])


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
