"""The paper's background generator: SD1.5 + ControlNet (canny) inpainting around a fixed product.

For each candidate the product cut-out is scaled and placed on a square canvas; the pipeline repaints
everything but the product (inpainting mask: white = repaint, black = keep) under a canny control image
of the placed product. With a 4-channel UNet, diffusers blends the product's own latents back in after
every denoising step, so the product region ends in latent space exactly at the encoded init image; after
decoding, the original product pixels are pasted back, so the ad shows the product pixel for pixel.

Two ways to get the networks:
- pretrained (paper preset): MajicMIX-realistic v7 (SD1.5, diffusers format) and ControlNet v1.1 canny from
  local folders or hub ids already in the local Hugging Face cache; nothing is downloaded.
- random init (``models.random_init``): ``tiny`` parts for tests and laptops, or ``full`` parts with the real
  SD1.5/ControlNet sizes for throughput measurements without the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from caig.errors import ConfigError
from caig.generate.backends import BackgroundGenerator, check_candidates
from caig.generate.products import ProductInput, product_mask
from caig.logs import get_logger

log = get_logger("generate")

#: CLIP's text context length in SD1.5 (tokens, start and end included).
TEXT_CONTEXT = 77

#: The SD1.5 noise schedule (what MajicMIX and every SD1.5 fine-tune ship in scheduler_config.json).
SD15_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

#: Random-init part sizes. ``full`` matches SD1.5 + ControlNet v1.1 (for throughput without weights);
#: ``tiny`` keeps the same structure (4-block VAE: latents are 1/8 of the canvas, as the ControlNet's
#: 4-stage conditioning embedding expects) at a size that runs in a fraction of a second on a CPU.
RANDOM_ARCHITECTURES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "unet": {
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
            "norm_num_groups": 8,
            "sample_size": 8,
        },
        "vae": {
            "block_out_channels": (8, 16, 32, 32),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "latent_channels": 4,
            "sample_size": 64,
        },
        "text": {
            # one token per character: 256 positions see about as much text as CLIP's 77 BPE tokens
            "max_position_embeddings": 256,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "projection_dim": 32,
        },
        "controlnet": {"conditioning_embedding_out_channels": (8, 16, 32, 32)},
    },
    "full": {
        "unet": {
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
            "sample_size": 64,
        },
        "vae": {
            "block_out_channels": (128, 256, 512, 512),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "latent_channels": 4,
            "sample_size": 512,
            "scaling_factor": 0.18215,
        },
        "text": {
            "vocab_size": 49408,
            "max_position_embeddings": TEXT_CONTEXT,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "projection_dim": 768,
            "hidden_act": "quick_gelu",
        },
        "controlnet": {"conditioning_embedding_out_channels": (16, 32, 96, 256)},
    },
}

StepCallback = Callable[[Any, int, Any, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def build_clip_tokenizer(context: int = TEXT_CONTEXT):
    """A CLIP tokenizer that needs no download: byte-level symbols only (no merges), lower-cased.

    Every text tokenizes (one token per character, ``</w>`` on a word's last one), which is all a
    random-init text encoder can use; the pretrained path loads the real tokenizer instead. ``context``
    is the padded length (the text encoder's positions).
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({f"{s}</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=context)


def build_random_pipeline(
    architecture: str, seed: int = 0, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
):
    """A StableDiffusionControlNetInpaintPipeline of random-init parts (``tiny`` or ``full``), no safety checker.

    The parts are created directly in ``dtype`` on ``device`` (no full-size float32 copy on the host). The
    same ``seed`` gives the same weights on a given device; the global RNG and default dtype are restored.
    """
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    if architecture not in RANDOM_ARCHITECTURES:
        raise ConfigError(
            f"generate.models.random_init={architecture!r} is unknown (expected one of {list(RANDOM_ARCHITECTURES)} "
            "or null for pretrained weights)"
        )
    parts = RANDOM_ARCHITECTURES[architecture]
    context = parts["text"]["max_position_embeddings"]
    tokenizer = build_clip_tokenizer(context)
    text_config = CLIPTextConfig(
        **{"vocab_size": len(tokenizer), **parts["text"]},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    device = torch.device(device)
    default_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            unet = UNet2DConditionModel(in_channels=4, out_channels=4, **parts["unet"])
            vae = AutoencoderKL(in_channels=3, out_channels=3, **parts["vae"])
            text_encoder = CLIPTextModel(text_config)
            controlnet = ControlNetModel.from_unet(unet, **parts["controlnet"])
        finally:
            torch.set_default_dtype(default_dtype)
    return StableDiffusionControlNetInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        controlnet=controlnet,
        scheduler=DDIMScheduler(**SD15_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _local_or_hub(value: str, key: str, marker: str, what: str) -> str:
    """Check a model reference: an existing folder must hold ``marker``; a path-like value must exist.

    Anything else is taken as a hub id, which is looked up in the local Hugging Face cache only.
    """
    path = Path(value).expanduser()
    if path.exists():
        if not (path / marker).is_file():
            raise ConfigError(f"{key}={value!r}: {path} has no {marker}; put {what} there")
        return str(path)
    looks_like_path = value.startswith(("/", ".", "~")) or value.count("/") != 1
    if looks_like_path:
        raise ConfigError(f"{key}={value!r}: no such folder; put {what} at {path} or point {key} at it")
    return value


def _load_failure(key: str, value: str, what: str, err: Exception) -> ConfigError:
    """The error for weights that would not load: a broken local folder, or a hub id missing from the cache."""
    if Path(value).exists():
        return ConfigError(
            f"{key}={value!r} could not be loaded (expected {what}): {type(err).__name__}: {err}"
        )
    from huggingface_hub.constants import HF_HUB_CACHE

    return ConfigError(
        f"{key}={value!r} is not a local folder and is not in the Hugging Face cache ({HF_HUB_CACHE}); this "
        f"stage never downloads. On a machine with network run `hf download {value}` with the same HF_HOME, "
        f"or set {key} to a local folder with {what}. ({type(err).__name__}: {err})"
    )


BASE_WHAT = (
    "a diffusers-format SD1.5 checkpoint (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/; "
    "for MajicMIX-realistic v7 e.g. the diffusers conversion digiplay/majicMIX_realistic_v7)"
)
CONTROLNET_WHAT = "a diffusers ControlNet (config.json + weights), e.g. lllyasviel/control_v11p_sd15_canny"
SAFETY_WHAT = (
    "a StableDiffusionSafetyChecker (config.json + weights) and its preprocessor_config.json, "
    "e.g. CompVis/stable-diffusion-safety-checker"
)


def load_pretrained_pipeline(models: DictConfig, dtype: torch.dtype, safety_checker: bool):
    """Load base SD1.5 + ControlNet (+ safety checker) offline from ``generate.models``; ConfigError if absent.

    With ``safety_checker`` on, the checker comes from ``models.safety_checker`` when set, else from the
    base checkpoint's own ``safety_checker/`` and ``feature_extractor/``.
    """
    from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    if not models.get("base") or not models.get("controlnet"):
        raise ConfigError(
            "generate.models.base and generate.models.controlnet must name the pretrained weights "
            "(or set generate.models.random_init=tiny|full)"
        )
    base = _local_or_hub(str(models.base), "generate.models.base", "model_index.json", BASE_WHAT)
    controlnet_ref = _local_or_hub(
        str(models.controlnet), "generate.models.controlnet", "config.json", CONTROLNET_WHAT
    )
    try:
        controlnet = ControlNetModel.from_pretrained(controlnet_ref, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as err:
        raise _load_failure("generate.models.controlnet", controlnet_ref, CONTROLNET_WHAT, err) from err
    extra: dict[str, Any] = {}
    if not safety_checker:
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    elif models.get("safety_checker"):
        checker_ref = _local_or_hub(
            str(models.safety_checker), "generate.models.safety_checker", "config.json", SAFETY_WHAT
        )
        try:
            extra = {
                "safety_checker": StableDiffusionSafetyChecker.from_pretrained(
                    checker_ref, dtype=dtype, local_files_only=True
                ),
                "feature_extractor": CLIPImageProcessor.from_pretrained(checker_ref, local_files_only=True),
            }
        except (OSError, ValueError) as err:
            raise _load_failure("generate.models.safety_checker", checker_ref, SAFETY_WHAT, err) from err
    try:
        pipeline = StableDiffusionControlNetInpaintPipeline.from_pretrained(
            base, controlnet=controlnet, dtype=dtype, local_files_only=True, **extra
        )
    except (OSError, ValueError) as err:
        raise _load_failure("generate.models.base", base, BASE_WHAT, err) from err
    if safety_checker and pipeline.safety_checker is None:
        raise ConfigError(
            f"generate.safety_checker=true but {base} ships no safety checker; set generate.models.safety_checker "
            f"to {SAFETY_WHAT}, or turn the checker off with generate.safety_checker=false"
        )
    return pipeline


@dataclass(frozen=True)
class Placement:
    """Where the product goes: its longest side is ``scale`` x canvas side, centred at ``position``.

    ``position`` is (x, y) as fractions of the canvas; the product is shifted inward if it would cross the
    border. ``fill`` is the colour under the product's transparent pixels in the init image.
    """

    scale: float = 0.6
    position: tuple[float, float] = (0.5, 0.5)
    alpha_threshold: int = 128
    fill: tuple[int, int, int] = (128, 128, 128)

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise ConfigError(f"generate.placement.scale={self.scale} (expected a fraction in (0, 1])")
        if len(self.position) != 2 or not all(0 <= p <= 1 for p in self.position):
            raise ConfigError(
                f"generate.placement.position={list(self.position)} (expected [x, y] in [0, 1])"
            )
        if not 0 < self.alpha_threshold <= 255:
            raise ConfigError(f"generate.placement.alpha_threshold={self.alpha_threshold} (expected 1..255)")
        if len(self.fill) != 3 or not all(0 <= c <= 255 for c in self.fill):
            raise ConfigError(f"generate.placement.fill={list(self.fill)} (expected [r, g, b] in 0..255)")


@dataclass(frozen=True)
class Canvas:
    """The pipeline inputs for one product, and what is needed to paste it back.

    ``keep`` is the product mask at pixel level; ``inpaint_mask`` (L, 255 = repaint, 0 = keep) keeps only
    the latent cells that lie wholly inside the product, so no fill colour survives around it.
    """

    product: Image.Image  # RGBA, canvas-sized, transparent outside the product
    keep: np.ndarray  # (size, size) bool
    init_image: Image.Image  # RGB: product over the fill colour
    inpaint_mask: Image.Image  # L
    control_image: Image.Image  # RGB canny edges


def place_product(image: Image.Image, size: int, placement: Placement) -> Image.Image:
    """The product cropped to its visible extent, scaled and placed on a transparent ``size`` x ``size`` canvas.

    When the scaled size equals the crop's size the pixels are copied unchanged (no resampling).
    """
    rgba = image.convert("RGBA")
    bbox = rgba.getchannel("A").getbbox()
    if bbox is None:
        raise ValueError("the product image is fully transparent")
    cut = rgba.crop(bbox)
    factor = placement.scale * size / max(cut.size)
    width, height = (min(size, max(1, round(side * factor))) for side in cut.size)
    if (width, height) != cut.size:
        cut = cut.resize((width, height), Image.Resampling.LANCZOS)
    left = min(max(round(placement.position[0] * size - width / 2), 0), size - width)
    top = min(max(round(placement.position[1] * size - height / 2), 0), size - height)
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(cut, (left, top))
    return canvas


def canny_control(image: Image.Image, low: int, high: int) -> Image.Image:
    """ControlNet v1.1 canny conditioning: white edges on black, three channels."""
    edges = cv2.Canny(np.asarray(image.convert("L")), low, high)
    return Image.fromarray(np.repeat(edges[..., None], 3, axis=2), "RGB")


def latent_keep_mask(keep: np.ndarray, block: int) -> np.ndarray:
    """Pixel mask of the ``block`` x ``block`` cells that lie wholly inside ``keep`` (one cell = one latent)."""
    height, width = keep.shape
    if height % block or width % block:
        raise ValueError(f"canvas {width}x{height} is not a multiple of the latent cell size {block}")
    cells = keep.reshape(height // block, block, width // block, block).all(axis=(1, 3))
    return np.repeat(np.repeat(cells, block, axis=0), block, axis=1)


def prepare_canvas(
    product: ProductInput, size: int, placement: Placement, block: int, canny: tuple[int, int]
) -> Canvas:
    """Place ``product`` and derive the init image, the inpainting mask and the canny control image."""
    placed = place_product(product.image, size, placement)
    keep = product_mask(placed, placement.alpha_threshold)
    init = Image.alpha_composite(Image.new("RGBA", (size, size), (*placement.fill, 255)), placed).convert(
        "RGB"
    )
    repaint = ~latent_keep_mask(keep, block)
    mask = Image.fromarray(np.where(repaint, 255, 0).astype(np.uint8), "L")
    return Canvas(placed, keep, init, mask, canny_control(init, *canny))


def paste_product(generated: Image.Image, canvas: Canvas) -> Image.Image:
    """Put the product back over a generated image: exact pixels inside ``keep``, alpha-blended soft edges."""
    background = np.asarray(generated.convert("RGB"), dtype=np.float32)
    product = np.asarray(canvas.product)
    alpha = product[..., 3:4].astype(np.float32) / 255.0
    blended = np.rint(product[..., :3] * alpha + background * (1.0 - alpha)).astype(np.uint8)
    return Image.fromarray(np.where(canvas.keep[..., None], product[..., :3], blended), "RGB")


@dataclass(frozen=True)
class DiffusionSettings:
    """Sampling settings from ``cfg.generate`` (see config/generate/diffusion.yaml)."""

    size: int = 512
    steps: int = 30
    scheduler: str = "DDIMScheduler"
    guidance_scale: float = 7.5
    controlnet_scale: float = 1.0
    batch_size: int = 8
    prompt_template: str = "{description}"
    negative_prompt: str = ""
    placement: Placement = Placement()
    canny: tuple[int, int] = (100, 200)

    def __post_init__(self) -> None:
        for key in ("size", "steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"generate.{key}={getattr(self, key)} (expected a positive integer)")
        if "{description}" not in self.prompt_template:
            raise ConfigError(
                f"generate.prompt_template={self.prompt_template!r} has no {{description}} placeholder"
            )
        try:
            self.prompt_template.format(description="")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(
                f"generate.prompt_template={self.prompt_template!r} is not a format string with only "
                f"{{description}} ({type(err).__name__}: {err}); double literal braces as {{{{ }}}}"
            ) from err
        if not 0 <= self.canny[0] <= self.canny[1]:
            raise ConfigError(f"generate.canny={list(self.canny)} (expected 0 <= low <= high)")

    @classmethod
    def from_config(cls, gen: DictConfig) -> DiffusionSettings:
        place = gen.placement
        return cls(
            size=int(gen.size),
            steps=int(gen.steps),
            scheduler=str(gen.scheduler),
            guidance_scale=float(gen.guidance_scale),
            controlnet_scale=float(gen.controlnet_scale),
            batch_size=int(gen.batch_size),
            prompt_template=str(gen.prompt_template),
            negative_prompt=str(gen.negative_prompt or ""),
            placement=Placement(
                scale=float(place.scale),
                position=tuple(float(p) for p in place.position),
                alpha_threshold=int(place.alpha_threshold),
                fill=tuple(int(c) for c in place.fill),
            ),
            canny=(int(gen.canny.low), int(gen.canny.high)),
        )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"generate.device={name!r} is not a torch device ({err})") from err


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` -> float16 on a GPU (the paper's setting), float32 on a CPU."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ConfigError(f"generate.dtype={name!r} (expected auto or one of {list(dtypes)})")
    return dtypes[name]


def set_scheduler(pipeline: Any, name: str) -> None:
    """Swap in the scheduler class ``name``, configured from the checkpoint's own noise schedule."""
    compatible = {cls.__name__: cls for cls in pipeline.scheduler.compatibles}
    compatible[type(pipeline.scheduler).__name__] = type(pipeline.scheduler)
    if name not in compatible:
        raise ConfigError(
            f"generate.scheduler={name!r} does not fit this pipeline (expected one of {sorted(compatible)})"
        )
    pipeline.scheduler = compatible[name].from_config(pipeline.scheduler.config)


class DiffusionGenerator(BackgroundGenerator):
    """SD1.5 + ControlNet-canny inpainting around the product, in batches of ``settings.batch_size``.

    Each candidate gets its own ``torch.Generator`` seeded with its seed, so an image depends on its
    (product, description, seed), not on which other candidates share its batch (up to the rounding of
    batched kernels: a few 8-bit levels on a handful of pixels); two candidates given one seed start from
    the same noise, in one batch or not.
    """

    def __init__(
        self, pipeline: Any, settings: DiffusionSettings, device: torch.device | str = "cpu"
    ) -> None:
        block = pipeline.vae_scale_factor
        if settings.size % block:
            raise ConfigError(
                f"generate.size={settings.size} must be a multiple of the VAE's downsampling {block}"
            )
        set_scheduler(pipeline, settings.scheduler)
        pipeline.set_progress_bar_config(disable=True)
        self.device = torch.device(device)
        self.pipeline = pipeline.to(self.device)
        self.settings = settings

    @classmethod
    def from_config(cls, gen: DictConfig) -> DiffusionGenerator:
        """Build from ``cfg.generate``: random-init parts or offline pretrained weights, on ``gen.device``."""
        settings = DiffusionSettings.from_config(gen)
        device = resolve_device(str(gen.device))
        dtype = resolve_dtype(str(gen.dtype), device)
        models = gen.models
        if models.get("random_init"):
            if gen.safety_checker:
                raise ConfigError(
                    "generate.safety_checker=true needs pretrained weights; random-init parts "
                    f"(generate.models.random_init={models.random_init}) have none: set generate.safety_checker=false"
                )
            pipeline = build_random_pipeline(
                str(models.random_init), int(models.get("seed", 0)), dtype, device
            )
        else:
            pipeline = load_pretrained_pipeline(models, dtype, bool(gen.safety_checker))
        log.info(
            "diffusion back end: %s on %s (%s), %dx%d, %d steps of %s",
            models.get("random_init") or models.base,
            device,
            dtype,
            settings.size,
            settings.size,
            settings.steps,
            settings.scheduler,
        )
        return cls(pipeline, settings, device)

    def canvas(self, product: ProductInput) -> Canvas:
        """The placed product and its masks/control image at this generator's canvas size."""
        s = self.settings
        return prepare_canvas(product, s.size, s.placement, self.pipeline.vae_scale_factor, s.canny)

    def generate(
        self,
        products: Sequence[ProductInput],
        descriptions: Sequence[str],
        seeds: Sequence[int],
        *,
        on_step_end: StepCallback | None = None,
    ) -> list[Image.Image]:
        """Render one ad per candidate; ``on_step_end`` is passed to diffusers as ``callback_on_step_end``."""
        check_candidates(products, descriptions, seeds)
        s = self.settings
        canvases: dict[int, Canvas] = {}
        images: list[Image.Image] = []
        flagged = 0
        for start in range(0, len(products), s.batch_size):
            stop = start + s.batch_size
            for product in products[start:stop]:
                if id(product) not in canvases:  # the candidates of one product share its canvas
                    canvases[id(product)] = self.canvas(product)
            batch = [canvases[id(p)] for p in products[start:stop]]
            prompts = [s.prompt_template.format(description=d) for d in descriptions[start:stop]]
            output = self.pipeline(
                prompt=prompts,
                negative_prompt=[s.negative_prompt] * len(prompts) if s.negative_prompt else None,
                image=[c.init_image for c in batch],
                mask_image=[c.inpaint_mask for c in batch],
                control_image=[c.control_image for c in batch],
                height=s.size,
                width=s.size,
                num_inference_steps=s.steps,
                guidance_scale=s.guidance_scale,
                controlnet_conditioning_scale=s.controlnet_scale,
                generator=[
                    torch.Generator(device=self.device).manual_seed(int(seed)) for seed in seeds[start:stop]
                ],
                output_type="pil",
                callback_on_step_end=on_step_end,
            )
            flagged += sum(output.nsfw_content_detected or [])
            images.extend(paste_product(image, canvas) for image, canvas in zip(output.images, batch))
        if flagged:
            log.warning("the safety checker blanked the background of %d of %d ads", flagged, len(images))
        return images
