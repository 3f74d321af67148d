# Figures (PNG) and the paper's tables with our numbers beside the paper's.


rule fig4:
    """Figure 4 style grid: image | FCN-32s | FCN-16s | FCN-8s | ground truth."""
    input:
        unpack(lambda w: dataset_inputs(EXPERIMENTS[config["figures"]["fig4"][w.group][0]]["dataset"], ["rgb"])),
        weights=lambda w: [weights(e) for e in config["figures"]["fig4"][w.group]],
    output:
        report(layout.fig4("{group}"), caption="../report/fig4.rst", category="Figures"),
    log:
        "logs/figures/fig4_{group}.log",
    benchmark:
        "benchmarks/figures/fig4_{group}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        labels=lambda w: [f"FCN-{EXPERIMENTS[e]['variant'][3:]} ({e})" for e in config["figures"]["fig4"][w.group]],
        split=lambda w: EXPERIMENTS[config["figures"]["fig4"][w.group][0]]["val_split"],
        n=config["evaluation"]["figure_images"],
        runtime=RUNTIME,
    script:
        "../scripts/fig4.py"


rule learning_curves:
    input:
        lambda w: [train_log(e) for e in config["figures"]["learning_curves"][w.group]],
    output:
        iterations=report(layout.curves("{group}"), caption="../report/learning_curves.rst", category="Figures"),
        wall_time=report(layout.curves("{group}", "_time"), caption="../report/learning_curves.rst", category="Figures"),
    log:
        "logs/figures/curves_{group}.log",
    benchmark:
        "benchmarks/figures/curves_{group}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        names=lambda w: config["figures"]["learning_curves"][w.group],
    script:
        "../scripts/learning_curves.py"


rule per_class:
    input:
        lambda w: [
            metrics(e, s)
            for e, s in evaluations()
            if EXPERIMENTS[e]["dataset"] == w.dataset and s == EXPERIMENTS[e]["val_split"]
        ],
    output:
        report(layout.per_class("{dataset}"), caption="../report/per_class.rst", category="Figures"),
    log:
        "logs/figures/per_class_{dataset}.log",
    benchmark:
        "benchmarks/figures/per_class_{dataset}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        names=lambda w: [
            e for e, s in evaluations() if EXPERIMENTS[e]["dataset"] == w.dataset and s == EXPERIMENTS[e]["val_split"]
        ],
    script:
        "../scripts/per_class.py"


rule tables:
    input:
        metrics=[metrics(e, s) for e, s in evaluations()],
        timing=[timing(e) for e in timed_experiments()],
        released=[released_metrics(n) for n, e in RELEASED.items() if e["table2_row"]],
    output:
        md=report(layout.TABLES_MD, caption="../report/tables.rst", category="Tables"),
        json=layout.TABLES_JSON,
    log:
        "logs/report/tables.log",
    benchmark:
        "benchmarks/report/tables.tsv"
    conda:
        "../envs/report.yaml"
    params:
        rows=table_records(),
        header={
            "config": config["name"],
            "source": config["source"],
            "width": config.get("width", 1.0),
            "iterations": {e: EXPERIMENTS[e]["iterations"] for e in EXPERIMENTS},
        },
        released=[
            {"table": "table2", "row": e["table2_row"], "name": n, "metrics": released_metrics(n)}
            for n, e in RELEASED.items()
            if e["table2_row"]
        ],
    script:
        "../scripts/tables.py"
