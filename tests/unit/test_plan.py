"""The workflow's plan on run-config dictionaries and edited Hydra trees, without a Snakemake subprocess: which
methods share epoch-1 sample and judge folders and epoch-0 evaluation folders, each (method, epoch)'s folders,
per-method epochs, and settings digests. The end-to-end dry runs of the same cases are in
tests/integration/test_workflow_lint.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from snakemake.utils import validate

from caig.plan import MATCH_SETTINGS, RENDER_SETTINGS, SAMPLE_SETTINGS, Plan
from tests.conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PRETRAINED_2_ADS = ("pcpo_no_textual", "pcpo_no_visual", "pcpo_vam_rm", "pcpo_cg4ctr_rm")


def plan_of(**sections) -> Plan:
    """The plan of a tiny run whose config.yaml holds ``sections``, validated (and filled) as Snakemake does."""
    config = {"preset": "tiny", **sections}
    validate(config, str(SCHEMA))
    return Plan(config)


@pytest.fixture
def method_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Appends YAML to one method's file (config/preference/<name>.yaml) of a copy of the Hydra tree."""
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    monkeypatch.setenv("CAIG_CONFIG_DIR", str(tree))

    def append(method: str, text: str) -> None:
        path = tree / "preference" / f"{method}.yaml"
        path.write_text(path.read_text() + text)

    return append


def test_default_layout_shares_epoch1_per_initial_model_and_judge():
    plan = plan_of()
    assert plan.methods == [
        "dpo",
        "pcpo",
        "pcpo_no_textual",
        "pcpo_no_visual",
        "pcpo_no_pretrain",
        "pcpo_vam_rm",
        "pcpo_cg4ctr_rm",
    ]
    assert set(plan.sample_folders.values()) == {"start-pretrained", "start-base"}
    assert plan.sample_folders["pcpo_no_pretrain"] == "start-base"
    assert plan.judge_folders == {
        "dpo": "start-pretrained-f_full",
        "pcpo": "start-pretrained-f_full",
        "pcpo_no_textual": "start-pretrained-f_full",
        "pcpo_no_visual": "start-pretrained-f_full",
        "pcpo_no_pretrain": "start-base-f_full",
        "pcpo_vam_rm": "start-pretrained-vam",
        "pcpo_cg4ctr_rm": "start-pretrained-cg4ctr",
    }
    # a shared folder composes the config of its first method; a method's own folder composes its own
    assert plan.run_method("start-pretrained") == "dpo"
    assert plan.run_method("start-pretrained-vam") == "pcpo_vam_rm"
    assert plan.run_method("pcpo_no_visual") == "pcpo_no_visual"
    assert "preference=pcpo_cg4ctr_rm" in plan.preference_overrides("judge", "start-pretrained-cg4ctr")
    # every method judges the shared epoch-1 ads of its initial model; from epoch 2 on its own
    assert plan.ads_run("start-pretrained-vam", 1) == "start-pretrained"
    assert plan.ads_run("start-base-f_full", 1) == "start-base"
    assert plan.ads_run("pcpo_vam_rm", 2) == "pcpo_vam_rm"
    assert plan.judge_run("pcpo", 1) == "start-pretrained-f_full"
    assert plan.judge_run("pcpo", 2) == "pcpo"


def test_study_sizes_give_per_method_epochs_and_epoch0_evaluation_folders():
    """preference.study in config/preset/tiny.yaml: dpo and pcpo run 5 epochs on 3 ads a product, the rest 2
    epochs on 2, so epoch 0 is evaluated twice for the pre-trained model."""
    plan = plan_of()
    assert {m: plan.method_epochs(m) for m in plan.methods} == {
        m: 5 if m in ("dpo", "pcpo") else 2 for m in plan.methods
    }
    assert plan.eval0_folders == {
        "dpo": "start-pretrained-dpo",
        "pcpo": "start-pretrained-dpo",
        **dict.fromkeys(PRETRAINED_2_ADS, "start-pretrained"),
        "pcpo_no_pretrain": "start-base",
    }
    assert plan.run_method("start-pretrained", "evaluate-match") == "pcpo_no_textual"
    assert plan.run_method("start-pretrained-dpo", "evaluate-match") == "dpo"
    assert plan.match_run("pcpo", 0) == "start-pretrained-dpo"
    assert plan.match_run("pcpo", 3) == "pcpo"
    assert len(plan.trained_epochs()) == 2 * 5 + 5 * 2
    assert plan.evaluated_epochs()[:6] == [("dpo", e) for e in range(6)]


def test_run_config_epochs_and_methods_override_the_study():
    plan = plan_of(preference={"methods": ["pcpo", "pcpo_no_textual"], "epochs": 3})
    assert plan.trained_epochs() == [(m, e) for m in ("pcpo", "pcpo_no_textual") for e in (1, 2, 3)]
    # pcpo (3 ads) and pcpo_no_textual (2 ads) evaluate differently; of a tie the earliest method's group wins
    assert plan.eval0_folders == {"pcpo": "start-pretrained", "pcpo_no_textual": "pcpo_no_textual"}
    assert plan.online_methods() == ["pcpo"]


def test_a_method_that_samples_differently_gets_its_own_epoch1_and_epoch0_folders(method_file):
    method_file("dpo", "sample:\n  temperature: 0.7\n")
    plan = plan_of()
    assert plan.sample_folders["dpo"] == plan.judge_folders["dpo"] == "dpo"
    assert plan.sample_folders["pcpo"] == "start-pretrained"
    assert plan.judge_folders["pcpo"] == "start-pretrained-f_full"
    assert plan.ads_run("dpo", 1) == "dpo"
    assert plan.run_method("start-pretrained") == "pcpo"
    assert plan.method_init("dpo") == "pretrained"
    # dpo evaluates alone; pcpo, the other 3-ad row, is then alone in its group too
    assert plan.eval0_folders["dpo"] == "dpo"
    assert plan.eval0_folders["pcpo"] == "pcpo"
    assert {plan.eval0_folders[m] for m in PRETRAINED_2_ADS} == {"start-pretrained"}


def test_a_method_that_judges_differently_shares_the_candidates_but_judges_and_evaluates_itself(method_file):
    method_file("dpo", "judge:\n  caption: false\n")  # read by judge and evaluate-match
    plan = plan_of()
    assert plan.sample_folders["dpo"] == "start-pretrained"
    assert plan.judge_folders["dpo"] == "dpo"
    assert plan.ads_run("dpo", 1) == "start-pretrained"
    assert "preference=dpo" in plan.preference_overrides("judge", "dpo")
    assert plan.judge_folders["pcpo"] == "start-pretrained-f_full"
    assert plan.run_method("start-pretrained-f_full") == "pcpo"
    assert plan.eval0_folders["dpo"] == "dpo"
    assert plan.eval0_folders["pcpo"] == "pcpo"
    assert plan.match_run("pcpo_no_visual", 0) == "start-pretrained"
    assert plan.run_method("start-pretrained", "evaluate-match") == "pcpo_no_textual"


def test_a_method_that_renders_differently_samples_and_judges_alone_but_shares_epoch0(method_file):
    method_file("pcpo_vam_rm", "render:\n  seed_per: candidate\n")
    plan = plan_of()
    assert plan.sample_folders["pcpo_vam_rm"] == plan.judge_folders["pcpo_vam_rm"] == "pcpo_vam_rm"
    assert plan.sample_folders["pcpo_cg4ctr_rm"] == "start-pretrained"
    # evaluate-match never renders with preference.render, so epoch 0 stays shared
    assert plan.eval0_folders["pcpo_vam_rm"] == "start-pretrained"
    def digest(command: str, nodes: tuple[str, ...], method: str) -> str:
        return plan.settings_digest(plan.preference_overrides(command, method), nodes)

    assert digest("sample", SAMPLE_SETTINGS, "pcpo_vam_rm") == digest("sample", SAMPLE_SETTINGS, "pcpo")
    assert digest("render", RENDER_SETTINGS, "pcpo_vam_rm") != digest("render", RENDER_SETTINGS, "pcpo")


def test_ties_go_to_the_group_of_the_earliest_method(method_file):
    method_file("dpo", "sample:\n  temperature: 0.7\n")
    assert plan_of(preference={"methods": ["pcpo", "dpo"]}).sample_folders == {
        "pcpo": "start-pretrained",
        "dpo": "dpo",
    }
    assert plan_of(preference={"methods": ["dpo", "pcpo"]}).sample_folders == {
        "dpo": "start-pretrained",
        "pcpo": "pcpo",
    }


def test_a_settings_digest_follows_exactly_the_nodes_a_command_reads():
    default, edited = plan_of(), plan_of(overrides={"sample": ["preference.sample.top_p=0.8"]})

    def digests(command: str, nodes: tuple[str, ...]) -> set[str]:
        return {p.settings_digest(p.preference_overrides(command, "pcpo"), nodes) for p in (default, edited)}

    assert len(digests("sample", SAMPLE_SETTINGS)) == 2
    assert len(digests("evaluate-match", MATCH_SETTINGS)) == 1
    # an override every method gets moves no folder
    assert edited.sample_folders == default.sample_folders
    assert "preference.sample.top_p=0.8" in edited.preference_overrides("sample", "start-pretrained")
    # sim's overrides reach the evaluation (its oracle), after the method and before the command's own
    both = plan_of(overrides={"sim": ["sim.seed=3"], "evaluate-match": ["seed=1"]})
    overrides = both.preference_overrides("evaluate-match", "dpo", "sim")
    assert overrides == "preset=tiny preference=dpo sim.seed=3 seed=1"


def test_an_unshared_start_folder_names_itself():
    with pytest.raises(ValueError, match="start-pretrained-vam"):
        plan_of(preference={"methods": ["pcpo"]}).run_method("start-pretrained-vam")


def test_rows_that_evaluate_the_last_epoch_only_skip_the_epochs_between(monkeypatch: pytest.MonkeyPatch):
    plan = plan_of()
    evaluated = plan.evaluated_epochs()
    assert [e for m, e in evaluated if m == "pcpo"] == [0, 1, 2, 3, 4, 5]
    assert [e for m, e in evaluated if m == "pcpo_no_visual"] == [0, 2]
    assert len(plan.trained_epochs()) == 5 + 5 + 5 * 2  # every epoch still trains
    assert [e for m, e in plan_of(preference={"epochs": 1}).evaluated_epochs() if m == "pcpo_vam_rm"] == [0, 1]
    monkeypatch.setattr(plan, "method_settings", lambda method: {"epochs": 2, "evaluate_epochs": "every"})
    with pytest.raises(ValueError, match="evaluate_epochs of method dpo: 'every'"):
        plan.evaluated_epochs()
