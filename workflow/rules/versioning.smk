# What DVC (dvc.yaml, paper/dvc.yaml) needs from the workflow.
# `summaries`: the headline numbers of every evaluation as a flat JSON (`dvc metrics show`), every
# training's loss and validation curve as TSV (`dvc plots diff`); one cheap job for all of them, while
# metrics.json (per-class numbers) stays the evaluate rule's output.
# `restore_extracted`: DVC caches the archives, not their extracted trees (the data once); after a
# `dvc pull` this target re-extracts every archive present, then `snakemake all --touch` re-stamps the
# outputs in DAG order and nothing reruns (docs/cluster.md, "A fresh clone without retraining").


rule summaries:
    input:
        metrics=[metrics(e, s) for e, s in evaluations()],
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
    script:
        "../scripts/summaries.py"


rule restore_extracted:
    """Target only: data/extracted/<source> for every archive present in data/raw (after a dvc pull)."""
    input:
        [extracted(s) for s in ARCHIVE_SOURCES if Path(raw(s)).exists()],
