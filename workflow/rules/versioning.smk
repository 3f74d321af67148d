# What DVC (dvc.yaml, paper/dvc.yaml) needs from the workflow.
# `summaries`: each dataset's headline net's validation mean IU and the run's source in one JSON (`dvc
# metrics show`, `dvc exp show`: one column per dataset, so it fits a screen), every training's loss and validation curve in one long TSV
# per metric (`dvc plots`: overlaid, coloured by experiment); one cheap job, while each evaluation's
# metrics.json (all numbers, per class) stays the evaluate rule's output.
# `live_record`: the run's DVCLive folder, the lead net's training (fcncfg.lead_experiment) replayed from its
# log — what `dvc exp show` shows of the trainings (7 columns); asked for by `all` when dvclive is installed.
# `restore_extracted`: DVC caches the archives, not their extracted trees (the data once); after a
# `dvc pull` this target re-extracts every archive present, then `snakemake all --touch` re-stamps the
# outputs in DAG order and nothing reruns (docs/cluster.md, "A fresh clone without retraining").


rule summaries:
    input:
        metrics=[metrics(e, s) for e, s in summary_evaluations().values()],
        logs=[train_log(e) for e in EXPERIMENTS],
    output:
        metrics=summary_files()["metrics"],
        loss=summary_files()["loss"],
        val=summary_files()["val"],
    log:
        "logs/report/summaries.log",
    benchmark:
        "benchmarks/report/summaries.tsv"
    conda:
        "../envs/report.yaml"
    params:
        names=list(summary_evaluations()),
        experiments=list(EXPERIMENTS),
        source=config["source"],
    script:
        "../scripts/summaries.py"


rule live_record:
    input:
        log=train_log(LEAD) if LEAD else [],
    output:
        directory(layout.SUMMARY_LIVE),
    log:
        "logs/report/live_record.log",
    benchmark:
        "benchmarks/report/live_record.tsv"
    conda:
        "../envs/report.yaml"
    params:
        record={
            "experiment": LEAD,
            "dataset": EXPERIMENTS[LEAD]["dataset"] if LEAD else None,
            "source": config["source"],
        },
    script:
        "../scripts/live_record.py"


rule restore_extracted:
    """Target only: data/extracted/<source> for every archive present in data/raw (after a dvc pull)."""
    input:
        [extracted(s) for s in ARCHIVE_SOURCES if Path(raw(s)).exists()],
