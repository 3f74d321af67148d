# NYUD depth → HHA PNGs (Gupta et al. 2014). The folder data/nyud/hha is built whole and swapped in
# (fcnlib.files.io.staged_dir), so a rerun leaves no PNG of an older run; the manifest (sha256 per image),
# inside it, is the declared output.


rule encode_hha:
    input:
        dataset_json("nyud"),
    output:
        layout.derived_modality("nyud", registry.DERIVED_MODALITIES["hha"]),
    log:
        "logs/hha/encode_hha.log",
    benchmark:
        "benchmarks/hha/encode_hha.tsv"
    priority: DATA_FIRST
    conda:
        "../envs/data.yaml"
    threads: config["workers"]
    params:
        camera=config["datasets"].get("nyud", {}).get("camera", "nyu-color-gupta-crop"),
        depth_scale=config["datasets"].get("nyud", {}).get("depth_scale", 0.001),
    script:
        "../scripts/encode_hha.py"
