"""The CAIG reward model: which of two ad images of one product (shown left|right) gets more clicks.

Input: one image, the two creatives resized and concatenated left|right, and the prompt
C_RM = f_instruct(Q_RM, attributes) in the backbone's chat format, ending at the generation prompt. The
readout feeds two heads: a classifier over {left better, right better} and a regression of the two CTRs.
Readout ``last_token`` (the paper, Eq. 5): the final hidden state h of the last real (non-pad) token.
Readout ``side`` (tiny scale only, docs/fidelity.md): concat(h, d, h * d), d the mean final hidden state over
the left half's high-res image-feature tokens minus that over the right half's, because a tiny language model's
last token barely registers which side holds which ad.
Readout ``side_desc`` (tiny scale only, docs/fidelity.md): side's features, then q = the description head's
token probabilities (caig vision-pretrain, read through the base model's tower: ``TileDescriber``) of the left
tile minus those of the right tile, and q times the one-hot of the product's category wherever the prompt's
product information names it (zero otherwise). The describer and the backbone's own tower and projector stay
frozen: fine-tuning the tower on ~2k pairs damages what it learnt, and the tiny 4-layer language model does not
learn the category interaction from them.

Loss (paper sec. 3.2): cls_weight * CE + point_weight * L_point, L_point the mean squared error of the CTR head's
output against the observed (ctr_left, ctr_right), averaged over the two outputs and the batch, as in the
authors' code; lambda1 = 1, lambda2 = 0.5 in the full model.

``ctr_scale`` multiplies the targets before the squared error (default 1: the paper's raw CTRs); the head then
predicts scaled CTRs and ``RewardOutput.ctr`` reports them divided back.

The generative variant (no classification head) is the plain backbone trained to answer "left"/"right":
``encode_rm_inputs(..., answers=...)`` gives its LM labels, ``parse_generative_answer`` reads free text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BatchFeature, LlavaNextForConditionalGeneration, LlavaNextProcessor
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape
from transformers.utils import ModelOutput

from caig.errors import InputError
from caig.instruct import f_instruct
from caig.io import atomic_path
from caig.models.description import DescriptionHead, TileDescriber
from caig.models.llava import load_llava

LEFT, RIGHT = 0, 1  # class indices of the classification head
CAPTION_KEYS = frozenset({"caption"})
READOUTS = ("last_token", "side", "side_desc")
HEADS_FILE = "reward_heads.safetensors"
DESCRIBER_FILE = "tile_describer.safetensors"
SETTINGS_FILE = "reward_model.json"


# ---------------------------------------------------------------------------------------------- images
def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as RGB; transparency (RGBA, LA, palette with tRNS) is composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = image.convert("F")
        lo, hi = image.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        image = image.point(lambda v: (v - lo) * scale).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_image(image: Image.Image | str | Path) -> Image.Image:
    """A PIL image, or a path opened into one (InputError naming the file when unreadable)."""
    if isinstance(image, Image.Image):
        return image
    try:
        with Image.open(image) as opened:
            opened.load()
            return opened
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"cannot read image: {err}", file=image, expected="a PNG/JPEG/WebP image") from err


def concat_pair(left: Image.Image, right: Image.Image, size: int) -> Image.Image:
    """The RM's input image: both creatives fitted into ``size`` x ``size`` squares, side by side.

    Each image keeps its aspect ratio and is padded with white (ad creatives are square, so usually no
    padding); the result is RGB, ``2 * size`` wide and ``size`` high.
    """
    if size <= 0:
        raise ValueError(f"pair image size must be positive, got {size}")
    canvas = Image.new("RGB", (2 * size, size), (255, 255, 255))
    for slot, image in enumerate((left, right)):
        fitted = ImageOps.contain(to_rgb(image), (size, size), Image.Resampling.BICUBIC)
        offset = (slot * size + (size - fitted.width) // 2, (size - fitted.height) // 2)
        canvas.paste(fitted, offset)
    return canvas


# ---------------------------------------------------------------------------------------------- prompts
def reward_attributes(attributes: Mapping[str, object], *, caption: bool, info: bool) -> dict[str, object]:
    """The attributes the RM prompt shows, per ablation: the product caption and/or the other product info."""
    return {key: value for key, value in attributes.items() if (caption if key in CAPTION_KEYS else info)}


def reward_prompt(question: str, attributes: Mapping[str, object], *, caption: bool, info: bool) -> str:
    """C_RM = f_instruct(Q_RM, attributes) with the ablation's attribute selection."""
    return f_instruct(question, reward_attributes(attributes, caption=caption, info=info))


def chat_text(processor: LlavaNextProcessor, prompt: str) -> str:
    """One user turn (the image, then the prompt) followed by the assistant's generation prompt."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _encode(
    processor: LlavaNextProcessor, images: Sequence[Image.Image], texts: Sequence[str], padding_side: str
) -> BatchFeature:
    # A template that writes <s> itself must not get a second one from the tokenizer.
    bos = processor.tokenizer.bos_token
    add_special = not (bos and all(text.startswith(bos) for text in texts))
    return processor(
        images=list(images),
        text=list(texts),
        padding=True,
        padding_side=padding_side,
        add_special_tokens=add_special,
        return_tensors="pt",
    )


def encode_rm_inputs(
    processor: LlavaNextProcessor,
    pair_images: Sequence[Image.Image],
    prompts: Sequence[str],
    *,
    answers: Sequence[str] | None = None,
    padding_side: str = "right",
) -> BatchFeature:
    """Tokenize concatenated pair images with their prompts (chat format, ending at the generation prompt).

    With ``answers`` each row continues with " <answer>" and ``labels`` marks exactly the answer tokens
    (-100 elsewhere): the LM targets of the generative variant and of likelihood scoring. Answers must be
    right-padded so their positions are known.
    """
    if len(pair_images) != len(prompts):
        raise ValueError(f"{len(pair_images)} pair images but {len(prompts)} prompts")
    texts = [chat_text(processor, prompt) for prompt in prompts]
    if answers is None:
        return _encode(processor, pair_images, texts, padding_side)
    if len(answers) != len(texts):
        raise ValueError(f"{len(texts)} prompts but {len(answers)} answers")
    if padding_side != "right":
        raise ValueError("answers are encoded with right padding")
    prompt_batch = _encode(processor, pair_images, texts, "right")
    batch = _encode(processor, pair_images, [t + " " + a for t, a in zip(texts, answers)], "right")
    prompt_len = prompt_batch["attention_mask"].sum(1)
    full_len = batch["attention_mask"].sum(1)
    labels = torch.full_like(batch["input_ids"], -100)
    for row in range(len(texts)):
        start, end = int(prompt_len[row]), int(full_len[row])
        prefix = prompt_batch["input_ids"][row, :start]
        if end <= start or not torch.equal(batch["input_ids"][row, :start], prefix):
            raise ValueError(
                f"answer {answers[row]!r} does not tokenize as a continuation of the prompt (row {row})"
            )
        labels[row, start:end] = batch["input_ids"][row, start:end]
    batch["labels"] = labels
    return batch


# ---------------------------------------------------------------------------------------------- model
def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row; right for left padding, right padding and no padding."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(dim=1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so a left-padded row sees the same positions as unpadded."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def image_sides(
    backbone: LlavaNextForConditionalGeneration, input_ids: torch.Tensor, image_sizes: torch.Tensor
) -> torch.Tensor:
    """Per token of the merged sequence: +1 for a high-res image feature left of the image's vertical midline,
    -1 right of it, 0 otherwise (text, the whole-image base features, row newlines); shape of ``input_ids``.

    The layout comes from the model itself: each high-res patch feature carries its column (1-based) through
    the backbone's own ``pack_image_features`` (anyres grid, unpadding, newlines), and the packed order fills
    the ``image_token_id`` positions row by row, one image per row, as the backbone merges its features.
    """
    config = backbone.config
    patches = config.vision_config.image_size // config.vision_config.patch_size
    image_sizes = image_sizes.cpu()  # the layout is built on the CPU, whatever device the batch is on
    tagged, midlines = [], []
    for size in image_sizes:
        grid_h, grid_w = get_anyres_image_grid_shape(
            size, config.image_grid_pinpoints, config.vision_config.image_size
        )
        columns = torch.arange(grid_w * patches, dtype=torch.float32).view(grid_w, 1, patches) + 1
        tiles = columns.expand(grid_w, patches, patches).repeat(grid_h, 1, 1).reshape(grid_h * grid_w, -1, 1)
        tagged.append(torch.cat((torch.zeros(1, patches * patches, 1), tiles)))  # the base features first
        midlines.append(grid_w * patches / 2)
    packed, lengths = backbone.model.pack_image_features(
        tagged, image_sizes, config.vision_feature_select_strategy, image_newline=torch.zeros(1)
    )
    is_image = (input_ids == config.image_token_id).cpu()
    if is_image.sum(1).tolist() != lengths.tolist():
        raise ValueError(
            f"image tokens per row {is_image.sum(1).tolist()} do not match the packed features {lengths.tolist()}"
        )
    sides = torch.zeros(input_ids.shape, dtype=torch.float32)
    for row, (column, midline) in enumerate(zip(packed, midlines)):
        column = column[:, 0]
        sides[row, is_image[row]] = torch.where(column == 0, 0.0, torch.where(column <= midline, 1.0, -1.0))
    return sides.to(input_ids.device)


def side_difference(hidden: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (batch, seq, dim) over the left positions (sides == 1) minus over the right (-1)."""
    left, right = (sides == 1).to(hidden.dtype), (sides == -1).to(hidden.dtype)
    if bool((left.sum(1) == 0).any() or (right.sum(1) == 0).any()):
        raise ValueError("the side readout needs left and right image-feature tokens in every row")
    mean_left = (hidden * left[..., None]).sum(1) / left.sum(1, keepdim=True)
    mean_right = (hidden * right[..., None]).sum(1) / right.sum(1, keepdim=True)
    return mean_left - mean_right


def category_line_tokens(tokenizer: Any, categories: Sequence[str]) -> list[list[int]]:
    """Per category, the token ids of its line in a prompt's product information ("- Category: <name>"), as
    ``f_instruct`` renders it; a row's prompt names a category when it holds that id sequence."""
    lines = [f_instruct("?", {"category": name}).splitlines()[-1] for name in categories]
    return [list(tokenizer(line, add_special_tokens=False)["input_ids"]) for line in lines]


def category_one_hot(input_ids: torch.Tensor, category_tokens: Sequence[Sequence[int]]) -> torch.Tensor:
    """(batch, categories) float: 1 where a row's tokens hold the category's prompt line (a prompt without the
    product information names none, so its row is zero)."""
    found = torch.zeros(input_ids.shape[0], len(category_tokens), device=input_ids.device)
    for k, tokens in enumerate(category_tokens):
        if not tokens or len(tokens) > input_ids.shape[1]:
            continue
        pattern = torch.tensor(tokens, device=input_ids.device)
        windows = input_ids.unfold(1, len(tokens), 1)
        found[:, k] = (windows == pattern).all(-1).any(-1).float()
    return found


def tile_description_difference(
    describer: TileDescriber, pixel_values: torch.Tensor, image_sizes: torch.Tensor
) -> torch.Tensor:
    """The description head's token probabilities of each pair image's left tile minus its right tile,
    (batch, tokens). Every image must tile as one row of two (the left|right pair at the tower's tile size):
    LLaVA-NeXT's patches are then [whole image, left tile, right tile]."""
    config = describer.config
    for size in image_sizes.cpu():
        grid = get_anyres_image_grid_shape(size, config.image_grid_pinpoints, config.vision_config.image_size)
        if tuple(grid) != (1, 2):
            raise ValueError(
                f"the side_desc readout needs left|right pair images tiled 1 x 2; an image of size "
                f"{size.tolist()} tiles {tuple(grid)}"
            )
    tiles = pixel_values[:, 1:3].flatten(0, 1).to(next(describer.parameters()).dtype)
    probabilities = describer(tiles).sigmoid().view(pixel_values.shape[0], 2, -1)
    return probabilities[:, 0] - probabilities[:, 1]


def point_loss(ctr_pred: torch.Tensor, ctr: torch.Tensor, ctr_scale: float = 1.0) -> torch.Tensor:
    """L_point (paper Eqs. 6-7): mean over rows and both outputs of (ctr_pred - ctr_scale * ctr)^2.

    ``ctr_pred`` is the regression head's (batch, 2) output, ``ctr`` the raw observed (ctr_left, ctr_right).
    """
    if ctr_pred.shape != ctr.shape:
        raise ValueError(f"CTR predictions of shape {tuple(ctr_pred.shape)} for targets {tuple(ctr.shape)}")
    return F.mse_loss(ctr_pred.float(), ctr.float() * ctr_scale)


@dataclass
class RewardOutput(ModelOutput):
    """HF-style output: ``loss`` (with labels), ``logits`` over (left, right) and predicted raw ``ctr``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    ctr: torch.Tensor | None = None


class RewardModel(nn.Module):
    """LLaVA-NeXT backbone + classification head (left/right better) + CTR regression head on a readout."""

    def __init__(
        self,
        backbone: LlavaNextForConditionalGeneration,
        *,
        cls_weight: float = 1.0,
        point_weight: float = 0.5,
        ctr_scale: float = 1.0,
        readout: str = "last_token",
        describer: TileDescriber | None = None,
        category_tokens: Sequence[Sequence[int]] = (),
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if (readout == "side_desc") != (describer is not None):
            raise ValueError("the side_desc readout, and only it, reads a tile describer (description head)")
        if cls_weight < 0 or point_weight < 0 or ctr_scale <= 0:
            raise ValueError(
                f"need cls_weight >= 0, point_weight >= 0, ctr_scale > 0; got {cls_weight}, {point_weight}, "
                f"{ctr_scale}"
            )
        self.backbone = backbone
        self.cls_weight = float(cls_weight)
        self.point_weight = float(point_weight)
        self.ctr_scale = float(ctr_scale)
        self.readout = readout
        self.category_tokens = [list(tokens) for tokens in category_tokens]
        hidden = backbone.config.text_config.hidden_size
        width = hidden if readout == "last_token" else 3 * hidden
        dtype = next(backbone.parameters()).dtype
        self.describer = describer
        if describer is not None:
            width += len(describer.head.token_ids) * (1 + len(self.category_tokens))
            describer.to(dtype)
            for frozen in (backbone.model.vision_tower, backbone.model.multi_modal_projector, describer):
                frozen.requires_grad_(False)
        self.cls_head = nn.Linear(width, 2, dtype=dtype)
        self.ctr_head = nn.Linear(width, 2, dtype=dtype)
        std = getattr(backbone.config.text_config, "initializer_range", 0.02)
        for head in (self.cls_head, self.ctr_head):
            nn.init.normal_(head.weight, std=std)
            nn.init.zeros_(head.bias)

    @property
    def settings(self) -> dict[str, Any]:
        """The loss and readout settings saved beside the heads."""
        return {
            "cls_weight": self.cls_weight,
            "point_weight": self.point_weight,
            "ctr_scale": self.ctr_scale,
            "readout": self.readout,
            "category_tokens": self.category_tokens,
            "description_head": None if self.describer is None else self.describer.head.settings,
        }

    def activation_checkpointing_enable(self, **kwargs: Any) -> None:
        """Checkpoint the backbone's layers (HF Trainer calls this for ``activation_checkpointing=True``)."""
        self.backbone.activation_checkpointing_enable(**kwargs)

    def pooled_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The heads' input: the last non-pad token's final hidden state h (batch, hidden); for the side
        readout concat(h, d, h * d) (batch, 3 * hidden); for side_desc also the left-minus-right description
        probabilities q and q times the category one-hot, flattened."""
        hidden = self.backbone.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            pixel_values=pixel_values,
            image_sizes=image_sizes,
            use_cache=False,
        ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = hidden[rows, last_token_index(attention_mask)]
        if self.readout == "last_token":
            return last
        if image_sizes is None:
            raise ValueError("the side readout needs the images' sizes (image_sizes)")
        difference = side_difference(hidden, image_sides(self.backbone, input_ids, image_sizes))
        pooled = torch.cat((last, difference, last * difference), dim=-1)
        if self.describer is None:
            return pooled
        described = tile_description_difference(self.describer, pixel_values, image_sizes)
        category = category_one_hot(input_ids, self.category_tokens).to(described.dtype)
        by_category = (described[:, :, None] * category[:, None, :]).flatten(1)
        return torch.cat((pooled, described.to(pooled.dtype), by_category.to(pooled.dtype)), dim=-1)

    def loss(
        self, logits: torch.Tensor, ctr_pred: torch.Tensor, labels: torch.Tensor, ctr: torch.Tensor | None
    ) -> torch.Tensor:
        """cls_weight * CE(logits, labels) + point_weight * point_loss(ctr_pred, ctr, ctr_scale).

        ``ctr_pred`` is on the scaled (head) scale; ``ctr`` holds raw observed (ctr_left, ctr_right).
        """
        loss = self.cls_weight * F.cross_entropy(logits.float(), labels.long())
        if self.point_weight > 0:
            if ctr is None:
                raise ValueError("the point loss needs observed CTRs (ctr, shape (batch, 2))")
            loss = loss + self.point_weight * point_loss(ctr_pred, ctr, self.ctr_scale)
        return loss

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        ctr: torch.Tensor | None = None,
        **_: Any,
    ) -> RewardOutput:
        """Scores a batch; ``labels`` (0 = left better, 1 = right better) and raw ``ctr`` give the loss."""
        pooled = self.pooled_hidden(input_ids, attention_mask, pixel_values, image_sizes)
        pooled = pooled.to(self.cls_head.weight.dtype)
        logits = self.cls_head(pooled)
        ctr_pred = self.ctr_head(pooled)
        loss = None if labels is None else self.loss(logits, ctr_pred, labels, ctr)
        return RewardOutput(loss=loss, logits=logits, ctr=ctr_pred / self.ctr_scale)


def save_reward_model(model: RewardModel, processor: LlavaNextProcessor, out_dir: str | Path) -> Path:
    """Backbone (safetensors) + processor + heads + loss settings, written atomically to ``out_dir``.

    The directory is also a plain LLaVA-NeXT checkpoint (``load_llava`` reads the backbone alone).
    """
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        model.backbone.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        heads = {
            f"{name}.{key}": value.detach().contiguous().cpu()
            for name in ("cls_head", "ctr_head")
            for key, value in getattr(model, name).state_dict().items()
        }
        save_file(heads, str(tmp / HEADS_FILE))
        (tmp / SETTINGS_FILE).write_text(json.dumps(model.settings, indent=2) + "\n")
        if model.describer is not None:
            state = {key: value.detach().contiguous().cpu() for key, value in model.describer.state_dict().items()}
            save_file(state, str(tmp / DESCRIBER_FILE))
    return out_dir


def load_reward_model(path: str | Path, *, dtype: str = "auto") -> tuple[RewardModel, LlavaNextProcessor]:
    """Inverse of ``save_reward_model``."""
    path = Path(path)
    for name in (HEADS_FILE, SETTINGS_FILE):
        if not (path / name).is_file():
            raise InputError(
                f"not a saved reward model: {name} is missing",
                file=path,
                expected="a directory written by save_reward_model",
            )
    backbone, processor = load_llava(path, dtype=dtype)
    settings = json.loads((path / SETTINGS_FILE).read_text())
    head_settings = settings.pop("description_head", None)
    describer = None
    if head_settings is not None:
        describer = TileDescriber(backbone, DescriptionHead(**head_settings))
        describer.load_state_dict(load_file(str(path / DESCRIBER_FILE)))
    model = RewardModel(backbone, describer=describer, **settings)
    heads = load_file(str(path / HEADS_FILE))
    for name in ("cls_head", "ctr_head"):
        state = {key.split(".", 1)[1]: value for key, value in heads.items() if key.startswith(name + ".")}
        getattr(model, name).load_state_dict(state)
    return model.eval(), processor


# ---------------------------------------------------------------------------------------------- answers
_NOUNS = r"(?:one|image|picture|pic|photo|ad|option|creative|candidate)"
_ORDINAL_LEFT = re.compile(
    rf"\b(?:image|picture|pic|photo|ad|option|creative|candidate)\s*(?:1|one)\b|#\s*1\b|"
    rf"\b(?:first|1st)\s+{_NOUNS}\b|\bthe\s+(?:first|former)\b"
)
_ORDINAL_RIGHT = re.compile(
    rf"\b(?:image|picture|pic|photo|ad|option|creative|candidate)\s*(?:2|two)\b|#\s*2\b|"
    rf"\b(?:second|2nd)\s+{_NOUNS}\b|\bthe\s+(?:second|latter)\b"
)
_NEGATORS = {"not", "no", "neither", "nor", "instead", "rather"}
_COMPARATORS = {"than", "over", "versus", "vs"}
_WORSE = {"worse", "weaker", "inferior", "less", "loses", "lose", "lower", "poorer", "not"}
_CLAUSE_BREAK = re.compile(r"[.,;:!?\n]|\b(?:because|but|while|whereas|since|although|though)\b")


def _clause_votes(clause: str) -> dict[str, int]:
    """Votes of one clause: a mention counts for its side, or for the other side when it is negated
    ("not the left"), called worse ("left is worse"), or is what a positive comparison beats
    ("better than right"). A side that "worse than" beats counts for itself."""
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", clause)
    split = next((i for i, word in enumerate(words) if word in _COMPARATORS), len(words))
    head_worse = sum(1 for w in words[:split] if w in _WORSE or w.endswith("n't"))
    votes = {"left": 0, "right": 0}
    for index, word in enumerate(words):
        if word not in votes:
            continue
        before = words[max(0, index - 3) : index]
        for cut, w in enumerate(reversed(before)):  # a negation never reaches past another side or comparator
            if w in votes or w in _COMPARATORS:
                before = before[len(before) - cut :]
                break
        flips = sum(1 for w in before if w in _NEGATORS or w.endswith("n't"))
        if index < split:
            flips += sum(1 for w in words[index + 1 : split] if w in _WORSE or w.endswith("n't"))
        else:
            flips += 1 + head_worse
        side = word if flips % 2 == 0 else ("right" if word == "left" else "left")
        votes[side] += 1
    return votes


def parse_generative_answer(text: str) -> str | None:
    """Read "left" / "right" from a free-text answer, or None when it names neither side or both equally.

    Understands case and punctuation ("Right!"), phrases ("The left one.", "Left image is better"),
    ordinals ("image 1", "the second one", a bare "1"/"2") and comparisons that also name the losing side
    ("left is better than right", "not the left one, the right one", "right is worse than left"). The
    first clause that favours one side decides ("Right, because the left one is cluttered").
    """
    lowered = text.lower().strip()
    if re.fullmatch(r"\W*1\W*", lowered):
        return "left"
    if re.fullmatch(r"\W*2\W*", lowered):
        return "right"
    lowered = _ORDINAL_RIGHT.sub(" right ", _ORDINAL_LEFT.sub(" left ", lowered))
    for clause in _CLAUSE_BREAK.split(lowered):
        votes = _clause_votes(clause)
        if votes["left"] != votes["right"]:
            return "left" if votes["left"] > votes["right"] else "right"
    return None
