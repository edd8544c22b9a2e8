"""Batched depth-image projection vs per-sample loops, on CPU.

    .venv/bin/python benchmarks/bench_projection.py [--batch 64] [--points 2048] [--repeats 3] [--threads 0]

Times three ways to make the (B, 3, 3, 224, 224) images, best wall time over ``--repeats`` runs:

- naive loop: one cloud and one view at a time, every point's 25 splat pixels indexed at once and
  accumulated with ``index_add_`` (the official algorithm, written per sample);
- per-sample ``project``: the batched function called on one cloud at a time;
- batched ``project``: one call for the whole batch.

All three must agree. Prints each time and its ratio to the batched one. Runs in well under a minute.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from i2pmae.projection import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, PAPER_VIEWS, SPLAT_SIZE, project

HALF = SPLAT_SIZE // 2


def naive_loop(points: torch.Tensor) -> torch.Tensor:
    """Per cloud and per view, straight from DESIGN.md 1.2. (B, N, 3) -> (B, V, 3, S, S)."""
    steps = torch.arange(-HALF, HALF + 1)
    offsets = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), -1).view(-1, 2)  # (25, 2)
    mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(-1, 1, 1)
    clouds = []
    for cloud in points:
        views = []
        for row, col, dep in PAPER_VIEWS:
            plane, depth = cloud[:, [row, col]], cloud[:, dep]  # (N, 2), (N,)
            low = plane.amin(0)
            step = (plane.amax(0) - low).amax() / (IMAGE_SIZE - SPLAT_SIZE + 2)
            dense = torch.floor((plane - low) / step).unsqueeze(1) + offsets + 1  # (N, 25, 2)
            centre = torch.floor((dense.amax((0, 1)) + dense.amin((0, 1))) / 2)
            dense = dense + (IMAGE_SIZE // 2 - centre - 1)
            dense = (dense + (dense < 0).float() - (dense > IMAGE_SIZE - 1).float()).long()  # (N, 25, 2)
            flat = (dense[..., 0] * IMAGE_SIZE + dense[..., 1]).flatten()  # (N*25,)
            values = depth.repeat_interleave(len(offsets))  # (N*25,)
            image = cloud.new_zeros(IMAGE_SIZE * IMAGE_SIZE).index_add_(0, flat, values)
            views.append((torch.sigmoid(image.view(IMAGE_SIZE, IMAGE_SIZE)) - mean) / std)  # (3, S, S)
        clouds.append(torch.stack(views))
    return torch.stack(clouds)


def per_sample_project(points: torch.Tensor) -> torch.Tensor:
    """The batched function on one cloud at a time. (B, N, 3) -> (B, V, 3, S, S)."""
    return torch.cat([project(points[i : i + 1]).images for i in range(points.shape[0])])


def batched_project(points: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) -> (B, V, 3, S, S) in one call."""
    return project(points).images


def best_time(
    fn: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, repeats: int
) -> tuple[float, torch.Tensor]:
    """Best wall time over ``repeats`` calls, and the last output."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        images = fn(points)
        times.append(time.perf_counter() - start)
    return min(times), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    points = torch.randn(args.batch, args.points, 3, generator=torch.Generator().manual_seed(0))
    points = points / points.norm(dim=-1).amax(dim=1).view(-1, 1, 1)  # (B, N, 3) in the unit sphere
    methods = {"naive loop": naive_loop, "per-sample project": per_sample_project, "batched": batched_project}
    reference = batched_project(points)
    times = {}
    for name, fn in methods.items():
        times[name], images = best_time(fn, points, args.repeats)
        assert torch.allclose(images, reference, atol=1e-5), f"{name} disagrees with the batched projection"
    print(f"project B={args.batch} N={args.points} on CPU, {torch.get_num_threads()} threads, "
          f"best of {args.repeats}")
    for name, seconds in times.items():
        ratio = seconds / times["batched"]
        print(f"  {name:<20} {seconds * 1e3:8.1f} ms   {ratio:5.2f} x the batched time")


if __name__ == "__main__":
    main()
