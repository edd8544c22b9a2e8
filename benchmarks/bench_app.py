"""Time the explorer per stage for one shape, and what a user waits for: first result and slider moves.

    .venv/bin/python benchmarks/bench_app.py [--shape assets/chair_0001.off] [--repeat 5]

Targets on 2 CPU cores: first full result <= 1.0 s (a new shape: analysis, masks, reconstruction,
class confidences and every figure; teacher, checkpoint and probe already loaded) and slider change
<= 0.2 s (masks and their figures from the cached analysis; then the reconstruction under the new
masks, which the page shows next). Stages that need the checkpoint are skipped without one. The last table
measures what the bounded upload worker costs: the first full result with uploads read and analysed in
the server (before) and in the worker (now), alternated in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app import evaluation, handlers, reconstruction, shapes  # noqa: E402
from app.resources import DEFAULT_TEACHER, Unavailable, checkpoint_path, get_model, get_teacher  # noqa: E402
from app.ui import TORCH_THREADS  # noqa: E402
from i2pmae.explore import analyse_shape, draw_mask_pair, paper_model  # noqa: E402
from i2pmae.geometry import build_hierarchy  # noqa: E402
from i2pmae.io import load_points, read_shape  # noqa: E402
from i2pmae.projection import project  # noqa: E402

TARGETS_S = {"first full result": 1.0, "slider change: masks": 0.2, "slider change: reconstruction": 0.2,
             "new tau: sampler panels (1000 draws)": 1.0, "new tau: Chamfer over 32 mask seeds": 2.0,
             "new shape: tau sweep": 3.0}
DEFAULT_SHAPE = REPO / "assets" / "chair_0001.off"
SLIDER_LOG10_TAUS = (-3.0, -2.0, -1.0, 0.0, 1.0)


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stage_timings(shape: Path, num_points: int, repeat: int) -> dict[str, float | None]:
    """Seconds per pipeline stage, each on its own (None = needs the checkpoint, which is missing)."""
    teacher = get_teacher(DEFAULT_TEACHER)
    points = load_points(shape, num_points)
    xyz = torch.from_numpy(points)[None]  # (1, N, 3)
    views = project(xyz)
    explorer = paper_model()
    analysis = analyse_shape(explorer, points, teacher)
    with torch.no_grad():
        times = {
            "load (read file)": median_seconds(lambda: read_shape(shape), repeat),
            "sample (N points)": median_seconds(lambda: load_points(shape, num_points), repeat),
            "tokenise (FPS + kNN)": median_seconds(lambda: build_hierarchy(xyz), repeat),
            "project (3 depth views)": median_seconds(lambda: project(xyz), repeat),
            "teacher (3 views)": median_seconds(lambda: teacher(views.images.flatten(0, 1)), repeat),
            "mask (random + guided)": median_seconds(
                lambda: draw_mask_pair(explorer, analysis, seed=1), repeat),
        }
    try:
        _, model = get_model()
    except Unavailable:
        return {**times, "reconstruct (2 masks)": None, "classify": None}
    times["reconstruct (2 masks)"] = median_seconds(
        lambda: reconstruction.reconstruct(model, analysis, mask_ratio=0.8, temperature=1.0, seed=0), repeat)
    times["classify"] = median_seconds(lambda: evaluation.classify(shape), repeat)
    return times


def first_full_result(shape: Path, num_points: int, mask_seed: int) -> None:
    """A new shape: analysis, masks, reconstruction and class confidences, as the page asks for them."""
    shapes.clear_caches()
    handlers.explore(str(shape), num_points)
    handlers.reconstruct(str(shape), num_points, mask_seed=mask_seed)
    handlers.classify_panel(str(shape))


def worker_cost(shape: Path, num_points: int, repeat: int) -> dict[str, float]:
    """The first full result with uploads read and analysed in the server vs in the bounded worker,
    alternated call by call so both see the same machine load."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for isolated in (False, True):  # warm-up of each
        shapes.ISOLATED = isolated
        first_full_result(shape, num_points, 0)
    for i in range(repeat):
        for isolated in (False, True):
            shapes.ISOLATED = isolated
            start = time.perf_counter()
            first_full_result(shape, num_points, i)
            times[isolated].append(time.perf_counter() - start)
    shapes.ISOLATED = True
    return {"first full result, read and analysed in the server (before)": statistics.median(times[False]),
            "first full result, in the bounded worker (now)": statistics.median(times[True])}


def user_timings(shape: Path, num_points: int, repeat: int) -> dict[str, float]:
    """What a user waits for, through the same handlers as the page."""

    seeds = itertools.count()  # a new mask seed at every call: never a cached reconstruction
    taus = itertools.cycle(SLIDER_LOG10_TAUS)  # a new temperature at every call, like a user dragging

    def first_result() -> None:
        first_full_result(shape, num_points, next(seeds))

    def slider_masks() -> None:
        handlers.remask(str(shape), num_points, log10_tau=next(taus))

    def slider_reconstruction() -> None:
        handlers.reconstruct(str(shape), num_points, log10_tau=next(taus), mask_seed=next(seeds))

    fresh_ratios = (0.5 + 0.01 * i for i in itertools.count())  # a new ratio: never a cached measurement

    def sampler_panels() -> None:
        handlers.guidance_panels(str(shape), num_points, log10_tau=next(taus))

    def chamfer_spread() -> None:
        handlers.chamfer_boxes(str(shape), num_points, mask_ratio=next(fresh_ratios))

    def sweep() -> None:
        handlers.tau_sweep(str(shape), num_points, mask_ratio=next(fresh_ratios))

    return {"first full result": median_seconds(first_result, repeat),
            "slider change: masks": median_seconds(slider_masks, repeat),
            "slider change: reconstruction": median_seconds(slider_reconstruction, repeat),
            "new tau: sampler panels (1000 draws)": median_seconds(sampler_panels, repeat),
            "new tau: Chamfer over 32 mask seeds": median_seconds(chamfer_spread, repeat),
            "new shape: tau sweep": median_seconds(sweep, repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=Path, default=DEFAULT_SHAPE)
    parser.add_argument("--num-points", type=int, default=handlers.DEFAULT_POINTS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=TORCH_THREADS, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"shape {args.shape.name}, N = {args.num_points}, torch threads = {torch.get_num_threads()}, "
          f"median of {args.repeat}, checkpoint: {checkpoint_path() or 'none (its panels show a message)'}")
    print("\n| stage | seconds |\n|---|---|")
    for name, seconds in stage_timings(args.shape, args.num_points, args.repeat).items():
        print(f"| {name} | {'no checkpoint' if seconds is None else f'{seconds:.3f}'} |")
    print("\n| user action | seconds | target |\n|---|---|---|")
    for name, seconds in user_timings(args.shape, args.num_points, args.repeat).items():
        verdict = "ok" if seconds <= TARGETS_S[name] else "over"
        print(f"| {name} | {seconds:.3f} | <= {TARGETS_S[name]} ({verdict}) |")
    print("\n| upload isolation | seconds |\n|---|---|")
    cost = worker_cost(args.shape, args.num_points, args.repeat)
    for name, seconds in cost.items():
        print(f"| {name} | {seconds:.3f} |")
    before, now = cost.values()
    print(f"| cost of the worker | {now - before:+.3f} ({now / before:.2f}x) |")


if __name__ == "__main__":
    main()
