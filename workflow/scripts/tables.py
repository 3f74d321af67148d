"""results/tables.md and tables.json: our numbers beside the paper's, labelled with their provenance."""

import json
from pathlib import Path

from fcnlib.eval.inference import device_name
from fcnlib.pipeline.scripting import run
from fcnlib.report.tables import write_tables


def main(job):
    records = []
    for row in job.params.rows:  # each row names its metrics/timing files, inputs of the rule
        rec = {"table": row["table"], "row": row["row"], "experiment": row.get("experiment"),
               "metrics": row.get("metrics"), "stats": None, "timing": None, "note": row.get("note")}
        if row.get("timing"):
            t = json.loads(Path(row["timing"]).read_text())
            rec["stats"], rec["timing"] = t["stats"], t["timing"]
        records.append(rec)
    header = dict(job.params.header, device=device_name("auto"))
    write_tables(records, header, Path(job.output.md), Path(job.output.json),
                 released=list(job.params.get("released", [])))


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
