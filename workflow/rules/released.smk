# The authors' released FCN caffemodels, scored by us: download (rule download) → our weights file →
# the same evaluation script as our trained nets, on the same split → results/released.md.


rule convert_released:
    input:
        lambda w: raw(RELEASED[w.name]["source"]),
    output:
        "results/released/{name}/weights.pt",
    log:
        "logs/released/{name}/convert.log",
    benchmark:
        "benchmarks/released/{name}/convert.tsv"
    conda:
        "../envs/fcn.yaml"
    params:
        width=config.get("width", 1.0),
    script:
        "../scripts/convert_released.py"


rule evaluate_released:
    input:
        weights="results/released/{name}/weights.pt",
        data=lambda w: dataset_inputs(RELEASED[w.name]["dataset"], RELEASED[w.name]["modalities"]),
    output:
        "results/released/{name}/{split}/metrics.json",
    log:
        "logs/released/{name}/{split}.log",
    benchmark:
        "benchmarks/released/{name}/{split}.tsv"
    conda:
        "../envs/fcn.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=config["resources"]["gpu"],
    params:
        dataset_json=lambda w: dataset_json(RELEASED[w.name]["dataset"]),
        runtime=RUNTIME,
        max_images=config["evaluation"].get("max_images"),
        config_hash=lambda w: fcncfg.config_hash({"released": w.name, "source": SOURCES[RELEASED[w.name]["source"]]}),
    script:
        "../scripts/evaluate.py"


rule released_report:
    """Our score of each released caffemodel beside the authors' README number (and the paper's row)."""
    input:
        [released_metrics(n) for n in RELEASED],
    output:
        md="results/released.md",
        json="results/released.json",
    log:
        "logs/released/report.log",
    benchmark:
        "benchmarks/released/report.tsv"
    conda:
        "../envs/fcn.yaml"
    params:
        names=list(RELEASED),
        header={"config": config["name"], "source": config["source"], "width": config.get("width", 1.0)},
    script:
        "../scripts/released_report.py"
