# Data stage: synthetic world or imported logs -> validated catalog + log -> reward-model pairs.


rule sim_world:
    """The synthetic click world (tiny preset): products, ads, click log, the annotators' reviewed
    descriptions, and the oracle's truth."""
    output:
        catalog=f"{RUN}/world/catalog.parquet",
        log=f"{RUN}/world/log.parquet",
        creatives=f"{RUN}/world/creatives.parquet",
        reviewed=f"{RUN}/world/reviewed_descriptions.parquet",
        truth=f"{RUN}/world/truth.parquet",
        meta=f"{RUN}/world/world.json",
        images=directory(f"{RUN}/world/images"),
    log:
        f"{LOGS}/sim_world.log",
    benchmark:
        f"{BENCH}/sim_world.tsv"
    conda:
        ENV
    params:
        out=parent_of("catalog"),
        overrides=stage_overrides("sim"),
        settings=settings_of(stage_overrides("sim"), "sim", "seed"),
    shell:
        "caig sim --out {params.out} {params.overrides} 2> {log}"


rule import_data:
    """Convert an Alibaba CreativeRanking or CG4CTR dataset to the native raw schema."""
    input:
        log=config["data"].get("log", []),
    output:
        catalog=f"{RUN}/raw/catalog.parquet",
        log=f"{RUN}/raw/log.parquet",
    log:
        f"{LOGS}/import_data.log",
    conda:
        ENV
    params:
        layout=SOURCE,
        out=parent_of("catalog"),
        args=lambda wc: import_args(),
        overrides=stage_overrides("import"),
        settings=settings_of(stage_overrides("import"), "data"),
    shell:
        "caig import {params.layout} --log {input.log} {params.args} --out {params.out} {params.overrides} 2> {log}"


rule ingest:
    """Validate the catalog and log: fatal problems stop the run, bad rows go to quarantine with a reason."""
    input:
        unpack(lambda wc: raw_inputs()),
    output:
        catalog=f"{RUN}/data/catalog.parquet",
        log=f"{RUN}/data/log.parquet",
        quarantine=f"{RUN}/data/quarantine.parquet",
        report=f"{RUN}/data/ingest_report.json",
    log:
        f"{LOGS}/ingest.log",
    benchmark:
        f"{BENCH}/ingest.tsv"
    conda:
        ENV
    params:
        out=parent_of("catalog"),
        image_root=lambda wc: image_root_arg(),
        overrides=stage_overrides("ingest"),
        settings=settings_of(stage_overrides("ingest"), "data"),
    shell:
        "caig ingest --catalog {input.catalog} --log {input.log} {params.image_root}"
        " --out {params.out} {params.overrides} 2> {log}"


rule pairs:
    """Reward-model pairs: exposure E and relative CTR difference D per split, split by product."""
    input:
        catalog=rules.ingest.output.catalog,
        log=rules.ingest.output.log,
    output:
        train=f"{RUN}/pairs/train.parquet",
        test=f"{RUN}/pairs/test.parquet",
        summary=f"{RUN}/pairs/summary.json",
    log:
        f"{LOGS}/pairs.log",
    benchmark:
        f"{BENCH}/pairs.tsv"
    conda:
        ENV
    params:
        out=parent_of("train"),
        overrides=stage_overrides("pairs"),
        settings=settings_of(stage_overrides("pairs"), "data", "seed"),
    shell:
        "caig pairs --catalog {input.catalog} --log {input.log} --out {params.out} {params.overrides} 2> {log}"


rule data_report:
    """Data-stage summary: rows kept and quarantined (by reason), pairs per split and category."""
    input:
        ingest=rules.ingest.output.report,
        pairs=rules.pairs.output.summary,
    output:
        markdown=report(
            f"{RUN}/reports/data.md", caption="../report/data.rst", category="Data"
        ),
        figure=report(
            f"{RUN}/reports/ctr_diff.png",
            caption="../report/ctr_diff.rst",
            category="Data",
        ),
    log:
        f"{LOGS}/data_report.log",
    conda:
        ENV
    params:
        out=parent_of("markdown"),
        pairs=lambda wc, input: os.path.dirname(input.pairs),
        overrides=stage_overrides("data-report"),
    shell:
        "caig data-report --ingest {input.ingest} --pairs {params.pairs} --out {params.out}"
        " {params.overrides} 2> {log}"
