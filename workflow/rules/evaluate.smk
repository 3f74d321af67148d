# The authors' metrics (one confusion matrix over the split) and forward time for Tables 1 and 3.


rule evaluate:
    input:
        unpack(lambda w: dataset_inputs(w.dataset, EXPERIMENTS[w.exp]["modalities"])),
        weights=layout.weights("{dataset}", "{exp}"),
    output:
        layout.metrics("{dataset}", "{exp}", "{split}"),
    log:
        "logs/evaluate/{dataset}/{exp}/{split}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{exp}/{split}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),  # one GPU: a single-process job
    params:
        runtime=RUNTIME,
        max_images=config["evaluation"].get("max_images"),
        config_hash=lambda w: fcncfg.train_config(config, w.exp)["config_hash"],
    script:
        "../scripts/evaluate.py"


rule time_forward:
    """Forward time at 500×500 (median after warm-up) plus parameter count / receptive field / stride."""
    input:
        layout.weights("{dataset}", "{exp}"),
    output:
        layout.timing("{dataset}", "{exp}"),
    log:
        "logs/timing/{dataset}/{exp}.log",
    benchmark:
        "benchmarks/timing/{dataset}/{exp}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=min(1, config["resources"]["gpu"]),  # one GPU: a single-process job
    params:
        runtime=RUNTIME,
        timing=config["evaluation"]["timing"],
    script:
        "../scripts/time_forward.py"
