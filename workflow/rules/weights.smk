# ImageNet classifiers → fully convolutional backbones ("net surgery"): fc6 → 7×7 conv, fc7 → 1×1.


rule convert_weights:
    input:
        lambda w: raw(config["backbones"][w.backbone]["source"]),
    output:
        layout.backbone_weights("{backbone}"),
    log:
        "logs/weights/{backbone}.log",
    benchmark:
        "benchmarks/weights/{backbone}.tsv"
    conda:
        "../envs/train.yaml"
    params:
        format=lambda w: config["backbones"][w.backbone]["format"],
        width=config.get("width", 1.0),
    script:
        "../scripts/convert_weights.py"
