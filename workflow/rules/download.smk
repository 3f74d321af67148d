# Every file the pipeline needs is fetched by fcnlib.files.download.download: mirrors, size + checksum,
# HTTP Range resume, atomic rename, cache dirs for files dropped in by hand.


rule make_demo_sources:
    """The offline demo: synthetic datasets in the real on-disk formats, served to `download` via file://."""
    output:
        layout.DEMO_MANIFEST,
    log:
        "logs/demo/make_demo_sources.log",
    benchmark:
        "benchmarks/demo/make_demo_sources.tsv"
    conda:
        "../envs/data.yaml"
    params:
        demo=config.get("demo", {}),
        width=config.get("width", 1.0),
        released=sorted(config.get("released", {})),
    script:
        "../scripts/make_demo.py"


rule download:
    input:
        manifest=lambda w: [layout.DEMO_MANIFEST] if SOURCES[source_of_file(w.file)].get("demo") else [],
    output:
        layout.raw("{file}"),
    log:
        "logs/download/{file}.log",
    benchmark:
        "benchmarks/download/{file}.tsv"
    priority: DATA_FIRST
    retries: 2
    conda:
        "../envs/data.yaml"
    params:
        spec=lambda w: SOURCES[source_of_file(w.file)],
        cache_dirs=config.get("cache_dirs", []),
    script:
        "../scripts/download.py"
