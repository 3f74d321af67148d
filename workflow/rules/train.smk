# One rule for every experiment: FCN-16s/8s take the trained coarser net as input (staged training),
# RGB-HHA late fusion takes its two member nets. Resume state lives at an undeclared path
# (<exp>/.train/resume.pt) so a killed or preempted job continues where it stopped; weights.pt is
# written last.


rule train:
    input:
        unpack(train_inputs),
    output:
        weights=layout.weights("{dataset}", "{exp}"),
        log=layout.train_log("{dataset}", "{exp}"),
    log:
        "logs/train/{dataset}/{exp}.log",
    benchmark:
        "benchmarks/train/{dataset}/{exp}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=lambda w: train_gpus(w.exp),
        mem_mb=config["resources"]["mem_mb"],
        runtime=train_runtime,
    params:
        cfg=lambda w: fcncfg.train_config(config, w.exp),
        device=config["device"],
        gpus=lambda w: train_gpus(w.exp),  # processes; from the config (Snakemake may scale resources down)
    script:
        "../scripts/train.py"
