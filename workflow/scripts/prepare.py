"""Raw inputs → data/<dataset>/dataset.json, through the dataset's prepare function (fcnlib.facts.datasets)."""

from pathlib import Path

from fcnlib.data.prepare import prepare_dataset
from fcnlib.pipeline.scripting import run


def main(job):
    prepare_dataset(job.params.entry, Path(job.output[0]).parent, dict(job.input.items()),
                    options=job.params.options, takes_lists=job.params.takes_lists, source=job.params.source,
                    workers=job.threads)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
