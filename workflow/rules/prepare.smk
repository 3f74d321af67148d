# Archives → extracted trees → one dataset.json layout per dataset (labels as PNG class ids, 255 = void).


rule extract:
    input:
        lambda w: raw(w.source),
    output:
        directory(layout.extracted("{source}")),
    log:
        "logs/extract/{source}.log",
    benchmark:
        "benchmarks/extract/{source}.tsv"
    priority: DATA_FIRST
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/extract.py"


# One rule per dataset of the config, named prepare_<dataset>, generated from its registry entry
# (fcnlib.facts.datasets.DatasetSpec: the prepare function, its file arguments, downloaded split lists); a
# folder dataset of your own gets its entry from the config. E.g. prepare_pascal: SBD merge + the paper's
# splits (train 8,498 / seg11valid 736; trainaug 10,582 / val12 1,449).
for _name, _spec in DATASETS.items():

    rule:
        name:
            f"prepare_{_name}"
        input:
            **prepare_inputs(_name),
        output:
            dataset_json(_name),
        log:
            f"logs/prepare/{_name}.log",
        benchmark:
            f"benchmarks/prepare/{_name}.tsv"
        priority: DATA_FIRST
        conda:
            "../envs/data.yaml"
        threads: config["workers"]
        params:
            entry=_spec.prepare,
            options=dict(_spec.options),
            takes_lists=bool(_spec.split_lists),
            source=config["source"],
        script:
            "../scripts/prepare.py"
