"""Pre-train steps of the paper config with a CLIP-shaped random teacher: shapes/s, peak memory, the loss.

    .venv/bin/python scripts/gpu_pretrain.py [--steps 200] [--batch-size 64] [--shapes 256]
        [--config configs/pretrain/paper.yaml] [--precision fp32 bf16] [--compile inductor] [--device cuda]

The teacher is CLIP ViT-B/16's image tower with random weights (``open_clip.create_model("ViT-B-16",
pretrained=None)``, 512-d features): its maps have the real shapes, and it costs what the real one costs,
once per shape, when the teacher cache is built. The step is the trainer's (``i2pmae.train._pretrain_step``
under ``i2pmae.engine.autocast``, then ``engine._optimizer_step``, per-step learning rate), on random
ellipsoid clouds. ``--compile BACKEND``: the transformer stages and token embeddings compiled
(``train.compile``; the warm-up steps, not timed, include the compilation and the recompilation for
dynamic sizes). Small values (``--steps 3 --batch-size 4 --shapes 8 --device cpu``) check it on a CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from i2pmae import engine  # noqa: E402
from i2pmae import train as tr  # noqa: E402
from i2pmae.config import TrainConfig, load_config  # noqa: E402
from i2pmae.data import ScaleAndTranslate  # noqa: E402
from i2pmae.model import I2PMAE  # noqa: E402
from i2pmae.teacher_cache import build_teacher_cache  # noqa: E402
from i2pmae.teachers import ClipViTB16Teacher  # noqa: E402

MIB = 2**20
CLIP_DIM = 512
WARMUP_STEPS = 5  # not timed (cuDNN / allocator warm-up; compilation, and again for dynamic sizes)


def random_clouds(shapes: int, num_points: int) -> torch.Tensor:
    """(S, N, 3) points on random ellipsoids, in the unit sphere."""
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(shapes, num_points, 3, generator=g)
    radii = 0.4 + torch.rand(shapes, 1, 3, generator=g)  # (S, 1, 3)
    clouds = directions / directions.norm(dim=-1, keepdim=True) * radii
    return clouds / clouds.norm(dim=-1).amax(1)[:, None, None]


def clip_teacher(device: torch.device) -> ClipViTB16Teacher:
    import open_clip

    torch.manual_seed(0)
    visual = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).visual
    return ClipViTB16Teacher(visual).to(device)


def run(args: argparse.Namespace, precision: str, device: torch.device, cache, points: torch.Tensor) -> dict:
    """``args.steps`` trainer steps at ``precision``; returns shapes/s, peak memory and losses."""
    cfg = load_config(args.config, teacher="clip-vit-b16", teacher_dim=CLIP_DIM)
    train_cfg = TrainConfig(epochs=1, warmup_epochs=0.1, batch_size=args.batch_size, precision=precision)
    torch.manual_seed(0)
    model = engine.compile_dense(I2PMAE(cfg).to(device).train(), args.compile)
    optimizer = engine._adamw(model, train_cfg)
    gens = engine.Generators.create(0, 0, device)
    augment, total = ScaleAndTranslate(), args.steps + WARMUP_STEPS
    losses, start = [], None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(total):
        if step == WARMUP_STEPS:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        index = torch.randint(len(points), (args.batch_size,), generator=gens.augment)
        engine._set_lr(optimizer, engine.lr_at(step, total_steps=total, warmup_steps=total // 10,
                                               lr=train_cfg.lr, min_lr=train_cfg.min_lr))
        with engine.autocast(precision, device):
            batch = {"points": points[index], "index": index}
            out = tr._pretrain_step(model, batch, cache, augment, gens, device)
        engine._optimizer_step(model, optimizer, out.loss, None)
        losses.append(out.loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start if start is not None else float("nan")
    values = torch.stack(losses).float().cpu()
    if not bool(torch.isfinite(values).all()):
        raise FloatingPointError(f"{precision}: non-finite loss in {args.steps} steps")
    peak = torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else float("nan")
    return {"precision": precision, "shapes_s": args.steps * args.batch_size / seconds, "peak_MiB": peak,
            "first_loss": values[0].item(), "last_loss": values[-10:].mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "pretrain" / "paper.yaml"))
    parser.add_argument("--steps", type=int, default=200, help="timed steps (after a few warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shapes", type=int, default=256, help="random shapes in the data set")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--compile", default=None, help="a torch.compile backend (train.compile)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = load_config(args.config, teacher="clip-vit-b16", teacher_dim=CLIP_DIM)
    points = random_clouds(args.shapes, cfg.num_points)
    start = time.perf_counter()
    cache = build_teacher_cache(clip_teacher(device), points.to(device), key="gpu-check", progress=False)
    print(f"teacher cache: {args.shapes} shapes through random-weights CLIP ViT-B/16 in "
          f"{time.perf_counter() - start:.1f} s on {device}")
    for precision in args.precision:
        r = run(args, precision, device, cache, points)
        mode = f"compiled ({args.compile})" if args.compile else "eager"
        print(f"{Path(args.config).name} {precision} {mode}: {args.steps} steps x batch {args.batch_size}: "
              f"{r['shapes_s']:.1f} shapes/s, peak allocated {r['peak_MiB']:.0f} MiB, "
              f"loss {r['first_loss']:.4f} (first) -> {r['last_loss']:.4f} (mean of the last 10)", flush=True)


if __name__ == "__main__":
    main()
