"""Model builders: tiny LLaVA-NeXT + local tokenizer, save/load, paper config and its clear errors."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from PIL import Image
from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

from caig.config import compose
from caig.errors import ConfigError, InputError
from caig.models import PAPER_HUB_ID, build_llava, load_llava, save_pretrained_model, train_tokenizer
from caig.models.init import read_corpus
from caig.models.init import run as init_model

CONFIG = Path(__file__).resolve().parents[2] / "config"
TINY = yaml.safe_load((CONFIG / "model" / "tiny.yaml").read_text())


@pytest.fixture(scope="module")
def tiny() -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    return build_llava(TINY, ["a red leather shoe on a wooden table", "a blue mug in a sunny kitchen"] * 5)


@pytest.fixture
def model_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config tree holding only the `model` group, so these tests do not depend on the other groups."""
    root = tmp_path / "config"
    shutil.copytree(CONFIG / "model", root / "model")
    (root / "caig.yaml").write_text("defaults:\n  - _self_\n  - model: tiny\nseed: 0\n")
    monkeypatch.setenv("CAIG_CONFIG_DIR", str(root))
    return root


def _inputs(processor: LlavaNextProcessor, size: tuple[int, int] = (64, 32)) -> dict[str, torch.Tensor]:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which is better?"}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = Image.new("RGB", size, (200, 40, 40))
    return processor(images=[image], text=[text], add_special_tokens=False, return_tensors="pt")


def test_tokenizer_has_special_tokens_and_round_trips_any_text():
    tokenizer = train_tokenizer(["product ads with backgrounds"] * 20, vocab_size=300)
    assert tokenizer.pad_token_id == 0
    assert {tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token} == {"<s>", "</s>", "<unk>"}
    assert tokenizer.convert_tokens_to_ids("<image>") == tokenizer.image_token_id
    text = "Prix: 12,50 € — 日本 ünïcode"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer("a <image> b")["input_ids"].count(tokenizer.image_token_id) == 1


def test_tokenizer_vocab_too_small_is_a_config_error():
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(["x"], vocab_size=100)


def test_tiny_model_is_the_real_architecture_and_runs(tiny):
    model, processor = tiny
    assert isinstance(model, LlavaNextForConditionalGeneration)
    assert model.config.image_token_id == processor.tokenizer.image_token_id
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert model.config.vision_config.image_size == TINY["vision"]["image_size"]
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    batch = _inputs(processor)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, len(processor.tokenizer))
    assert torch.isfinite(logits).all()


def test_tiny_model_weights_are_seeded():
    a, _ = build_llava(TINY)
    b, _ = build_llava(TINY)
    c, _ = build_llava({**TINY, "seed": 1})
    weight = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])


def test_bad_pinpoints_are_a_config_error():
    with pytest.raises(ConfigError, match="image_grid_pinpoints"):
        build_llava({**TINY, "image_grid_pinpoints": [[32, 48]]})


def test_save_load_round_trip_gives_same_logits(tiny, tmp_path):
    model, processor = tiny
    out = save_pretrained_model(model, processor, tmp_path / "base")
    assert (out / "model.safetensors").is_file()
    reloaded, reprocessor = load_llava(out)
    batch, rebatch = _inputs(processor), _inputs(reprocessor)
    assert torch.equal(batch["input_ids"], rebatch["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**rebatch).logits)


def test_paper_model_config_composes(model_tree, monkeypatch):
    monkeypatch.delenv("CAIG_LLAVA_PATH", raising=False)
    cfg = compose(["model=paper"])
    assert cfg.model.source == "pretrained"
    assert cfg.model.path == PAPER_HUB_ID
    assert cfg.model.pair_image_size == 336
    monkeypatch.setenv("CAIG_LLAVA_PATH", "/models/llava")
    assert compose(["model=paper"]).model.path == "/models/llava"
    assert compose().model.source == "random"


def test_missing_local_path_says_what_to_put_where(model_tree, tmp_path):
    missing = tmp_path / "no" / "llava"
    cfg = compose(["model=paper", f"model.path={missing}"])
    with pytest.raises(ConfigError) as err:
        build_llava(cfg.model)
    message = str(err.value)
    assert str(missing) in message
    assert f"hf download {PAPER_HUB_ID} --local-dir" in message
    assert "config.json" in message and "safetensors" in message


def test_uncached_hub_id_is_a_config_error_without_network():
    with pytest.raises(ConfigError, match="local Hugging Face cache"):
        load_llava("caig-tests/not-a-cached-model")


def test_wrong_checkpoints_are_rejected(tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="without config.json"):
        load_llava(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConfigError, match="expected 'llava_next'"):
        load_llava(other)
    saved = save_pretrained_model(*tiny, tmp_path / "tiny")
    with pytest.raises(ConfigError, match="vision_config.image_size=32"):
        load_llava(saved, expect_vision={"image_size": 336})


def test_read_corpus_formats(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_text("first line\n\n  second line \n")
    assert read_corpus(txt) == ["first line", "second line"]
    table = pl.DataFrame({"title": ["red shoe", None], "price": [1.0, 2.0], "tags": [["summer", "sale"], []]})
    table.write_parquet(tmp_path / "c.parquet")
    assert sorted(read_corpus(tmp_path / "c.parquet")) == ["red shoe", "sale", "summer"]
    (tmp_path / "c.json").write_text(json.dumps([{"id": "1", "new_caption": "hand cream"}]))
    assert read_corpus(tmp_path / "c.json") == ["1", "hand cream"]
    with pytest.raises(InputError, match="c.csv"):
        (tmp_path / "c.csv").write_text("a,b\n")
        read_corpus(tmp_path / "c.csv")
    with pytest.raises(InputError, match="not found"):
        read_corpus(tmp_path / "missing.txt")


def test_init_model_writes_a_loadable_base_model(model_tree, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a green lamp in a cosy bedroom\n" * 10)
    out = tmp_path / "base"
    init_model(argparse.Namespace(corpus=corpus, out=out), compose())
    model, processor = load_llava(out)
    assert "lamp" in processor.tokenizer.get_vocab() or "Ġlamp" in processor.tokenizer.get_vocab()
    assert isinstance(model, LlavaNextForConditionalGeneration)
    with pytest.raises(InputError, match="--corpus"):
        init_model(argparse.Namespace(corpus=None, out=out), compose())
