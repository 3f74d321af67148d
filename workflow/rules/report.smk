# Figures (PNG) and the paper's tables with our numbers beside the paper's.


rule fig4:
    """Figure 4 style grid: image | FCN-32s | FCN-16s | FCN-8s | ground truth."""
    input:
        weights=lambda w: [weights(e) for e in config["figures"]["fig4"][w.group]],
        data=lambda w: dataset_inputs(EXPERIMENTS[config["figures"]["fig4"][w.group][0]]["dataset"], ["rgb"]),
    output:
        report("results/figures/fig4_{group}.png", caption="../report/fig4.rst", category="Figures"),
    log:
        "logs/figures/fig4_{group}.log",
    benchmark:
        "benchmarks/figures/fig4_{group}.tsv"
    conda:
        "../envs/report.yaml"
    params:
        labels=lambda w: [f"FCN-{EXPERIMENTS[e]['variant'][3:]} ({e})" for e in config["figures"]["fig4"][w.group]],
        dataset_json=lambda w: dataset_json(EXPERIMENTS[config["figures"]["fig4"][w.group][0]]["dataset"]),
        split=lambda w: EXPERIMENTS[config["figures"]["fig4"][w.group][0]]["val_split"],
        n=config["evaluation"]["figure_images"],
        runtime=RUNTIME,
    script:
        "../scripts/fig4.py"


rule learning_curves:
    input:
        lambda w: [f"{exp_dir(e)}/log.jsonl" for e in config["figures"]["learning_curves"][w.group]],
    output:
        iterations=report(
            "results/figures/curves_{group}.png", caption="../report/learning_curves.rst", category="Figures"
        ),
        wall_time=report(
            "results/figures/curves_{group}_time.png", caption="../report/learning_curves.rst", category="Figures"
        ),
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
        report("results/figures/per_class_{dataset}.png", caption="../report/per_class.rst", category="Figures"),
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
        timing=[f"{exp_dir(e)}/timing.json" for e in timed_experiments()],
        released=[released_metrics(n) for n, e in RELEASED.items() if e["table2_row"]],
    output:
        md=report("results/tables.md", caption="../report/tables.rst", category="Tables"),
        json="results/tables.json",
    log:
        "logs/report/tables.log",
    benchmark:
        "benchmarks/report/tables.tsv"
    conda:
        "../envs/report.yaml"
    params:
        rows=fcncfg.table_rows(config),
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
