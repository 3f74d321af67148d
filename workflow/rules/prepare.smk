# Archives → extracted trees → one dataset.json layout per dataset (labels as PNG class ids, 255 = void).


rule extract:
    input:
        lambda w: raw(w.source),
    output:
        directory("data/extracted/{source}"),
    log:
        "logs/extract/{source}.log",
    benchmark:
        "benchmarks/extract/{source}.tsv"
    priority: DATA_FIRST
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/extract.py"


rule prepare_pascal:
    """SBD merge + the paper's splits (train 8,498 / seg11valid 736; trainaug 10,582 / val12 1,449)."""
    input:
        voc2011=extracted("voc2011"),
        voc2012=extracted("voc2012"),
        sbd=extracted("sbd"),
        seg11valid=raw("seg11valid"),
        train_noval=raw("sbd_train_noval"),
    output:
        "data/pascal/dataset.json",
    log:
        "logs/prepare/pascal.log",
    benchmark:
        "benchmarks/prepare/pascal.tsv"
    priority: DATA_FIRST
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    params:
        source=config["source"],
    script:
        "../scripts/prepare_pascal.py"


rule prepare_nyud:
    input:
        nyud=extracted("nyud"),
        lists=[raw(s) for s in fcncfg.split_list_sources("nyud", SOURCES).values()],
    output:
        "data/nyud/dataset.json",
    log:
        "logs/prepare/nyud.log",
    benchmark:
        "benchmarks/prepare/nyud.tsv"
    priority: DATA_FIRST
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    params:
        source=config["source"],
        list_splits=list(fcncfg.split_list_sources("nyud", SOURCES)),  # the split of each input.lists file
    script:
        "../scripts/prepare_nyud.py"


rule prepare_siftflow:
    input:
        siftflow=extracted("siftflow"),
        lists=[raw(s) for s in fcncfg.split_list_sources("siftflow", SOURCES).values()],
    output:
        "data/siftflow/dataset.json",
    log:
        "logs/prepare/siftflow.log",
    benchmark:
        "benchmarks/prepare/siftflow.tsv"
    priority: DATA_FIRST
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    params:
        source=config["source"],
        list_splits=list(fcncfg.split_list_sources("siftflow", SOURCES)),  # the split of each input.lists file
    script:
        "../scripts/prepare_siftflow.py"


rule prepare_context:
    input:
        voc2010=extracted("voc2010"),
        context=extracted("context"),
        classes59=raw("context_classes59"),
    output:
        "data/context/dataset.json",
    log:
        "logs/prepare/context.log",
    benchmark:
        "benchmarks/prepare/context.tsv"
    priority: DATA_FIRST
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    params:
        source=config["source"],
    script:
        "../scripts/prepare_context.py"
