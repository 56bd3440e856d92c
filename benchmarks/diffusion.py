"""Throughput of the diffusers back end (SD1.5 + ControlNet canny inpainting), in ads per second by batch size.

    python benchmarks/diffusion.py                               # tiny random parts on this machine (CPU)
    python benchmarks/diffusion.py --full                        # SD1.5-sized random parts, 512 px, 30 steps, fp16 on GPU
    python benchmarks/diffusion.py --full --steps 1 --size 64    # CPU smoke test of the full-size code path

Random weights cost the same FLOPs as MajicMIX + ControlNet v1.1, so ``--full`` on a GPU measures what the
preference loop will pay per ad. The last line compares the best rate with the paper's budget: 32K products
x 2 candidates = 64K ads per epoch, 5 epochs in about 20 h on 8xA100 (rendering is one part of that 20 h).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from caig.config import compose
from caig.generate import ProductInput, make_generator

PAPER_ADS_PER_EPOCH = 32_000 * 2
PAPER_EPOCHS = 5
PAPER_HOURS = 20.0
PAPER_DEVICES = 8


def synthetic_products(count: int) -> list[ProductInput]:
    """Cut-outs shaped like bottles and boxes, with noisy colours, so canny finds edges."""
    rng = np.random.default_rng(0)
    products = []
    for i in range(count):
        alpha = Image.new("L", (400, 400), 0)
        draw = ImageDraw.Draw(alpha)
        draw.rounded_rectangle((120, 60 + 10 * i, 280, 380), radius=30, fill=255)
        draw.rectangle((175, 10, 225, 70), fill=255)
        rgb = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
        products.append(
            ProductInput(f"bench{i}", Image.fromarray(np.dstack([rgb, np.asarray(alpha)]), "RGBA"), "")
        )
    return products


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full", action="store_true", help="SD1.5 + ControlNet-sized random parts (default: tiny)"
    )
    parser.add_argument("--size", type=int, help="canvas side (default: 512 with --full, else 64)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: 30 with --full, else 4)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: 1 2 4 8 (--full: 1 4 8 16)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls per batch size, after one warm-up"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--dtype", default="auto", help="auto (fp16 on GPU, fp32 on CPU) | float32 | float16 | bfloat16"
    )
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    size = args.size or (512 if args.full else 64)
    steps = args.steps or (30 if args.full else 4)
    batch_sizes = args.batch_sizes or ([1, 4, 8, 16] if args.full else [1, 2, 4, 8])
    group = "generate" if "generate" in compose() else "+generate"
    cfg = compose(
        [
            f"{group}=diffusion",
            f"generate.models.random_init={'full' if args.full else 'tiny'}",
            "generate.safety_checker=false",
            f"generate.size={size}",
            f"generate.steps={steps}",
            f"generate.device={args.device}",
            f"generate.dtype={args.dtype}",
        ]
    )
    started = time.perf_counter()
    generator = make_generator(cfg)
    built = time.perf_counter() - started
    pipe = generator.pipeline
    params = sum(
        p.numel() for m in (pipe.unet, pipe.controlnet, pipe.vae, pipe.text_encoder) for p in m.parameters()
    )
    device = generator.device
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"diffusion back end, {'full' if args.full else 'tiny'} random parts ({params / 1e6:.1f}M params, import + "
        f"build {built:.1f} s), {size}x{size}, {steps} steps, guidance {generator.settings.guidance_scale}, "
        f"{pipe.unet.dtype}, {where}"
    )
    products = synthetic_products(max(batch_sizes))
    print(f"{'batch':>5} {'s/call':>8} {'ads/s':>8}")
    best = 0.0
    for batch in batch_sizes:
        generator.settings = dataclasses.replace(generator.settings, batch_size=batch)
        chosen, descriptions = products[:batch], ["a marble counter in soft morning light"] * batch
        generator.generate(chosen, descriptions, list(range(batch)))  # warm-up: kernels, allocator, caches
        started = time.perf_counter()
        for repeat in range(args.repeats):
            seeds = list(range(batch * (repeat + 1), batch * (repeat + 2)))
            ads = generator.generate(chosen, descriptions, seeds)
        elapsed = (time.perf_counter() - started) / args.repeats
        rate = batch / elapsed
        best = max(best, rate)
        assert len(ads) == batch and ads[0].size == (size, size)
        print(f"{batch:>5} {elapsed:>8.3f} {rate:>8.2f}")
    total = PAPER_ADS_PER_EPOCH * PAPER_EPOCHS
    hours = total / (best * PAPER_DEVICES) / 3600
    print(
        f"paper budget: {PAPER_ADS_PER_EPOCH:,} ads/epoch x {PAPER_EPOCHS} epochs = {total:,} ads; at {best:.2f} ads/s "
        f"per device x {PAPER_DEVICES} devices, rendering takes {hours:.2f} h = {100 * hours / PAPER_HOURS:.1f}% of "
        f"the paper's {PAPER_HOURS:.0f} h for {PAPER_EPOCHS} epochs on 8xA100 ({size}x{size}, {steps} steps, {where})"
    )


if __name__ == "__main__":
    main()
