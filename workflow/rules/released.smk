# The authors' released FCN caffemodels, scored by us: download (rule download) → our weights file →
# the same evaluation script as our trained nets, on the same split → results/released.md.


rule convert_released:
    input:
        lambda w: raw(RELEASED[w.name]["source"]),
    output:
        layout.released_weights("{name}"),
    log:
        "logs/released/{name}/convert.log",
    benchmark:
        "benchmarks/released/{name}/convert.tsv"
    conda:
        "../envs/fcn.yaml"
    params:
        width=config.get("width", 1.0),
        data_source=config["source"],
    script:
        "../scripts/convert_released.py"


rule evaluate_released:
    input:
        unpack(lambda w: dataset_inputs(RELEASED[w.name]["dataset"], RELEASED[w.name]["modalities"])),
        weights=layout.released_weights("{name}"),
    output:
        layout.released_metrics("{name}", "{split}"),
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
        md=layout.RELEASED_MD,
        json=layout.RELEASED_JSON,
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


# One named target per released model, so scoring one needs no path: `snakemake released_voc_fcn8s`
# (the name with '-' as '_'; README: The authors' released models) → results/released/<name>/<split>/metrics.json.
for _name in RELEASED:

    rule:
        name:
            f"released_{_name.replace('-', '_')}"
        input:
            released_metrics(_name),
