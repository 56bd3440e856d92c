"""The workflow's plan: from the validated run config, which methods run for how many epochs, which folders
they share, and each job's settings digest.

The rule files ask it one-line questions (workflow/rules/common.smk builds one ``Plan`` from Snakemake's
``config``), so the folder-sharing algorithm is plain Python that unit tests exercise on config dictionaries
without a Snakemake subprocess. Each command's config is the Hydra tree (``caig.config.compose``) composed
from the overrides its job gets; the plan composes each set of overrides once.

Folders of the preference stage (under ``<run>/preference`` and ``<run>/evaluate/match``): epoch 1 of the
methods that share an initial model (``preference.init``) and sample and render alike reads one set of
candidates and ads, ``start-<init>``; those of them that also judge alike with the same reward model share one
preference set, ``start-<init>-<judge>``; epoch 0's match-rate evaluation is shared the same way
(``start-<init>``, or ``start-<init>-<first method>`` for a second group that evaluates alike). A method that
differs gets its own folder; from epoch 2 on every method has its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omegaconf import OmegaConf

from caig.config import compose

# What the workflow runs when config.yaml does not say (workflow/schemas/config.schema.yaml lists the names).
DEFAULT_RM_VARIANTS = ("a_base", "b_pretrained", "c_cls_head", "d_caption", "e_product_info", "f_full")
DEFAULT_RM_BASELINES = ("vam", "cg4ctr")
DEFAULT_METHODS = (
    "dpo",
    "pcpo",
    "pcpo_no_textual",
    "pcpo_no_visual",
    "pcpo_no_pretrain",
    "pcpo_vam_rm",
    "pcpo_cg4ctr_rm",
)

# The reward model behind every method's RM win rate in the match-rate table: the full CAIG RM (one judge for
# all methods, so the column compares them); each method's own judge is its config's preference.reward_model.
WIN_RATE_RM = "f_full"

# What each preference-stage command reads of the composed config: the digest in its job's `settings` param,
# and what methods must agree on (their `preference.*` parts; the rest is one for all) to share a start folder.
SAMPLE_SETTINGS = (
    "preference.init",
    "preference.dtype",
    "preference.products",
    "preference.sample",
    "generate",
    "model",
    "seed",
)
RENDER_SETTINGS = ("preference.render", "generate", "model", "seed")
JUDGE_SETTINGS = ("preference.dtype", "preference.judge", "preference.reward_model", "model", "seed")
MATCH_SETTINGS = (*SAMPLE_SETTINGS, "preference.evaluate", "preference.judge", "sim")


def node_at(tree: Any, path: str) -> Any:
    """The value at a dotted path (``preference.sample``) of a composed config; None where it is absent."""
    for key in path.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


class Plan:
    """What one run does, read from Snakemake's validated ``config`` and the Hydra tree it composes."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.preset: str = config["preset"]
        self.command_overrides: Mapping[str, Sequence[str]] = config.get("overrides", {})
        reward = config.get("reward", {})
        self.rm_variants: list[str] = list(reward.get("variants", DEFAULT_RM_VARIANTS))
        self.rm_baselines: list[str] = list(reward.get("baselines", DEFAULT_RM_BASELINES))
        preference = config.get("preference", {})
        self.methods: list[str] = list(preference.get("methods", DEFAULT_METHODS))
        self.epochs_for_all: int | None = preference.get("epochs")
        self._composed: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------ overrides, digests
    def _extra(self, commands: Iterable[str]) -> list[str]:
        return [item for name in commands for item in self.command_overrides.get(name, [])]

    def stage_overrides(self, command: str) -> str:
        """Hydra overrides of one `caig` command (one shell-quoted string): the preset, then
        config['overrides'][command]."""
        return shlex.join([f"preset={self.preset}", *self._extra([command])])

    def reward_overrides(self, command: str, name: str) -> str:
        """Hydra overrides of a reward-model job: the preset, the variant or baseline ``name``, the command's."""
        return shlex.join([f"preset={self.preset}", f"reward={name}", *self._extra([command])])

    def preference_overrides(self, command: str, run: str, *also: str) -> str:
        """Hydra overrides of a preference job in folder ``run``: the preset, the method whose config the folder
        composes (run_method), then config['overrides'][c] for each of ``also`` (e.g. "sim": the oracle is
        recomposed from the world's config) and for ``command``."""
        method = self.run_method(run, command)
        return shlex.join([f"preset={self.preset}", f"preference={method}", *self._extra([*also, command])])

    def online_overrides(self) -> list[str]:
        """Hydra overrides of `caig online` and `caig online-report`: the preset, the world's overrides (the
        oracle is recomposed from the same sim config as `caig sim`), then config['overrides']['online']."""
        return [f"preset={self.preset}", *self._extra(["sim", "online"])]

    def composed(self, overrides: str) -> dict[str, Any]:
        """The config a command composes from ``overrides`` (one shell-quoted string), as plain data."""
        if overrides not in self._composed:
            self._composed[overrides] = OmegaConf.to_container(compose(shlex.split(overrides)), resolve=True)
        return self._composed[overrides]

    def settings_digest(self, overrides: str, nodes: Sequence[str]) -> str:
        """A digest of the Hydra nodes (dotted paths) a job's command reads, as it composes them from
        ``overrides``: editing the config tree changes the digest of exactly the jobs whose settings changed."""
        chosen = {name: node_at(self.composed(overrides), name) for name in nodes}
        text = json.dumps(chosen, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def job_threads(self, command: str) -> int:
        """Cores a job of ``command`` takes on a local run (the rule's `threads`): its preset's
        ``train.job_threads[command]``, else 1 (``train.torch_threads`` then sets torch's threads)."""
        composed = self.composed(self.stage_overrides(command))
        return int((node_at(composed, "train.job_threads") or {}).get(command, 1))

    # ------------------------------------------------------------------------------------ models
    @functools.cached_property
    def vision_pretrain(self) -> bool:
        """Whether the base model is init-model's after its vision tower's pre-training (model.vision_pretrain)."""
        composed = self.composed(self.stage_overrides("vision-pretrain"))
        return bool(node_at(composed, "model.vision_pretrain.enabled"))

    def reward_init(self, name: str) -> str:
        """The backbone a reward variant starts from (its config's reward.init): `base` or `pretrained`."""
        return str(self.composed(self.reward_overrides("reward-train", name))["reward"]["init"])

    def reads_description_head(self, name: str) -> bool:
        """Whether a reward variant reads the vision pre-training's description head (a classifier with the
        side_desc readout)."""
        node = self.composed(self.reward_overrides("reward-train", name))["reward"]
        return node["kind"] == "classifier" and node.get("readout") == "side_desc"

    # ------------------------------------------------------------------------------------ methods
    def method_settings(self, method: str) -> dict[str, Any]:
        """The `preference` node of a method, as its training command composes it."""
        return self.composed(self.preference_overrides("preference-train", method))["preference"]

    def method_epochs(self, method: str) -> int:
        """N of Algorithm 1 for a method: config.yaml's preference.epochs, else the method's composed
        preference.epochs (the tiny preset runs the paper's 5 for DPO and PCPO, fewer for the other rows)."""
        return int(self.epochs_for_all or self.method_settings(method)["epochs"])

    def method_init(self, method: str) -> str:
        """`pretrained` or `base`: the method's epoch-0 model."""
        return str(self.method_settings(method)["init"])

    def method_judge(self, method: str) -> str:
        """The reward model (variant or baseline name) that judges the method's candidates."""
        return str(self.method_settings(method)["reward_model"])

    def trained_epochs(self) -> list[tuple[str, int]]:
        """Every (method, epoch >= 1) of the study, in table order."""
        return [(m, e) for m in self.methods for e in range(1, self.method_epochs(m) + 1)]

    def evaluated_epochs(self) -> list[tuple[str, int]]:
        """Every (method, epoch >= 0) the match-rate evaluation covers, in table order: each epoch, or epochs 0
        and N where the method's preference.evaluate_epochs is `last`."""
        pairs = []
        for method in self.methods:
            last = self.method_epochs(method)
            which = self.method_settings(method)["evaluate_epochs"]
            if which not in ("all", "last"):
                raise ValueError(f"preference.evaluate_epochs of method {method}: {which!r}; expected 'all' or 'last'")
            every = which == "all"
            pairs += [(method, epoch) for epoch in (range(last + 1) if every else sorted({0, last}))]
        return pairs

    # ------------------------------------------------------------------------------------ shared folders
    def _init_run(self, method: str) -> str:
        return f"start-{self.method_init(method)}"

    def _start_run(self, method: str) -> str:
        return f"start-{self.method_init(method)}-{self.method_judge(method)}"

    def _settings_key(self, method: str, command: str, keys: Sequence[str]) -> str:
        """The `preference.*` values among ``keys`` that a method composes for ``command``, as one string."""
        composed = self.composed(self.preference_overrides(command, method))
        chosen = {key: node_at(composed, key) for key in keys if key.startswith("preference.")}
        return json.dumps(chosen, sort_keys=True, default=str)

    def _sharing(self, candidates: Sequence[str], command: str, keys: Sequence[str]) -> set[str]:
        """Of ``candidates`` (in methods order), the largest group that composes the same settings for
        ``command`` (ties: the group of the earliest method): the methods that share one start folder."""
        groups: dict[str, list[str]] = {}
        for method in candidates:
            groups.setdefault(self._settings_key(method, command, keys), []).append(method)
        return set(max(groups.values(), key=len))

    def _same_init(self, method: str) -> list[str]:
        return [m for m in self.methods if self._init_run(m) == self._init_run(method)]

    @functools.cached_property
    def sample_folders(self) -> dict[str, str]:
        """Method -> the folder of its epoch-1 candidates and ads: start-<init>, shared by the methods with that
        initial model that sample and render alike (same model, seeds and settings: the same files), else the
        method's own."""
        folders = {}
        for method in self.methods:
            candidates = self._same_init(method)
            alike = self._sharing(candidates, "sample", SAMPLE_SETTINGS) & self._sharing(
                candidates, "render", RENDER_SETTINGS
            )
            folders[method] = self._init_run(method) if method in alike else method
        return folders

    @functools.cached_property
    def judge_folders(self) -> dict[str, str]:
        """Method -> the folder of its epoch-1 preference set: start-<init>-<judge>, shared by the methods that
        share the candidates and judge them alike, else the method's own."""
        shares_candidates = [m for m in self.methods if self.sample_folders[m] != m]
        folders = {}
        for method in self.methods:
            candidates = [m for m in shares_candidates if self._start_run(m) == self._start_run(method)]
            shared = method in candidates and method in self._sharing(candidates, "judge", JUDGE_SETTINGS)
            folders[method] = self._start_run(method) if shared else method
        return folders

    @functools.cached_property
    def eval0_folders(self) -> dict[str, str]:
        """Method -> the folder of its epoch-0 match-rate evaluation: start-<init>, shared by the largest group of
        methods with that initial model that evaluate alike; start-<init>-<first method> for another such group
        (e.g. rows evaluated on more ads); the method's own when no other method evaluates alike."""
        folders = {}
        for method in self.methods:
            candidates = self._same_init(method)
            if method in self._sharing(candidates, "evaluate-match", MATCH_SETTINGS):
                folders[method] = self._init_run(method)
                continue
            key = self._settings_key(method, "evaluate-match", MATCH_SETTINGS)
            alike = [m for m in candidates if self._settings_key(m, "evaluate-match", MATCH_SETTINGS) == key]
            folders[method] = f"{self._init_run(method)}-{alike[0]}" if len(alike) > 1 else method
        return folders

    def run_method(self, run: str, command: str | None = None) -> str:
        """The method whose Hydra config a run folder's jobs compose: the run itself, or for a shared start folder
        the first method that shares it for ``command`` (evaluate-match: the epoch-0 evaluation folders;
        otherwise the epoch-1 sample and judge folders)."""
        if not run.startswith("start-"):
            return run
        if command == "evaluate-match":
            sharers = [m for m in self.methods if self.eval0_folders[m] == run]
        else:
            sharers = [m for m in self.methods if run in (self.sample_folders[m], self.judge_folders[m])]
        if not sharers:
            raise ValueError(f"no configured method shares the folder {run!r} (methods: {self.methods})")
        return sharers[0]

    # ------------------------------------------------------------------------------------ per (method, epoch)
    def judge_run(self, method: str, epoch: int) -> str:
        """The folder of the preference set a method trains on in an epoch (epoch 1: its judge folder)."""
        return self.judge_folders[method] if int(epoch) == 1 else method

    def ads_run(self, run: str, epoch: int) -> str:
        """The folder of the ads a judge job in folder ``run`` scores: the epoch's own, except that epoch 1's
        live in the sample folder of the folder's method."""
        return self.sample_folders[self.run_method(run)] if int(epoch) == 1 else run

    def match_run(self, method: str, epoch: int) -> str:
        """The folder of a method's match-rate evaluation in an epoch (epoch 0: its eval0 folder)."""
        return self.eval0_folders[method] if int(epoch) == 0 else method

    # ------------------------------------------------------------------------------------ online A/B
    @functools.cached_property
    def online(self) -> dict[str, Any]:
        """The `online` node of the config `caig online` composes (methods compared, control, labels)."""
        return self.composed(shlex.join(self.online_overrides()))["online"]

    def online_methods(self) -> list[str]:
        """The online test's methods this run trains, in table order; the others show as "not run"."""
        return [method for method in self.online["methods"] if method in self.methods]
