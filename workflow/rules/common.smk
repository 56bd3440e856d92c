# Shared helpers: config validation, output paths, and the Hydra overrides each stage command gets.
import os
import shlex

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

PRESET = config["preset"]
# Every output of this run lives under RUN; a table row's file is RUN/<stage>/...
RUN = f"{config['results']}/{PRESET}"
LOGS = f"{RUN}/logs"
BENCH = f"{RUN}/benchmarks"
# The software every rule runs with (documented for --use-conda; the README's setup builds the same in .venv).
ENV = "../../environment.yml"
SOURCE = config["data"]["source"]


def stage_overrides(command):
    """Hydra overrides for one `caig` command: the preset, then config['overrides'][command]."""
    extra = config["overrides"].get(command, [])
    return shlex.join([f"preset={PRESET}", *extra])


def parent_of(output_key):
    """A params function giving the folder of one output: commands take `--out DIR`."""
    return lambda wildcards, output: os.path.dirname(output[output_key])


def raw_inputs():
    """The catalog and log that ingest validates: the world's, the user's native files, or the importer's."""
    if SOURCE == "synthetic":
        return {
            "catalog": rules.sim_world.output.catalog,
            "log": rules.sim_world.output.log,
        }
    if SOURCE == "native":
        return {"catalog": config["data"]["catalog"], "log": config["data"]["log"]}
    return {
        "catalog": rules.import_data.output.catalog,
        "log": rules.import_data.output.log,
    }


def image_root_arg():
    """Imported datasets name images relative to their image folder; native files may set image_root."""
    root = config["data"].get("image_root")
    if SOURCE in ("alibaba", "cg4ctr"):
        root = config["data"]["images"]
    return f"--image-root {shlex.quote(root)}" if root else ""


def import_args():
    """Layout-specific importer options (image folder, optional captions)."""
    args = ["--images", config["data"]["images"]]
    if config["data"].get("captions"):
        args += ["--captions", config["data"]["captions"]]
    return shlex.join(args)


def all_targets():
    return [
        *table_targets(),
        rules.pairs.output.train,
        rules.pairs.output.test,
        rules.benchmark_summary.output.markdown,
    ]


def table_targets():
    return [rules.data_report.output.markdown, rules.data_report.output.figure]
