"""``i2pmae <command>``: the command-line entry point.

Every command reports failures as one readable line on stderr and a non-zero exit code;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_USER_ERROR = 2


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="write depth views, saliency, random vs guided masks as PNG")
    p.add_argument("shape", help="a shape file (ply obj off stl pcd xyz txt npy npz)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-points", type=int, default=2048)
    p.add_argument("--teacher", default="efficientnet-lite0")
    p.add_argument("--teacher-weights", default=None, help="local weights file for the teacher")
    p.add_argument("--mask-ratio", type=float, default=0.8)
    p.add_argument("--temperature", type=float, default=1.0, help="tau of the guided mask (1 = paper)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import visualize as viz
    from .explore import analyse_shape, make_masks, mask_stats
    from .io import load_points
    from .teachers import load_teacher

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=4, desc="explore", unit="step", file=sys.stderr)
    points = load_points(args.shape, args.num_points, seed=args.seed)
    teacher = load_teacher(args.teacher, weights_path=args.teacher_weights)
    steps.update()
    analysis = analyse_shape(points, teacher)
    steps.update()
    masks = make_masks(analysis, mask_ratio=args.mask_ratio, temperature=args.temperature, seed=args.seed)
    name = Path(args.shape).name
    depth = analysis.maps.views.depth[0].cpu().numpy()  # (V, H, W)
    written = [
        viz.save_depth_views(depth, out / "depth_views.png", title=f"{name}: depth images"),
        viz.save_saliency(
            depth, analysis.maps.saliency[0].cpu().numpy(), out / "saliency.png",
            title=f"{name}: {teacher.name} saliency",
        ),
    ]
    steps.update()
    summary = {"shape": str(args.shape), "teacher": teacher.name, "mask_ratio": args.mask_ratio,
               "temperature": args.temperature, "seed": args.seed, "levels": []}
    pts = analysis.points.cpu().numpy()
    for level, centers in enumerate(analysis.hierarchy.centers):
        stats = mask_stats(analysis, masks, level)
        summary["levels"].append(stats)
        titles = [
            f"random: mean saliency of visible {stats['mean_saliency_visible_random']:.2e}",
            f"2D-guided (tau={args.temperature:g}): {stats['mean_saliency_visible_guided']:.2e}",
        ]
        written.append(viz.save_mask_comparison(
            pts, centers[0].cpu().numpy(),
            [masks.random[level].cpu().numpy(), masks.guided[level].cpu().numpy()], titles,
            out / f"masks_level{level}_{centers.shape[1]}.png",
            saliency=analysis.token_saliency[level].cpu().numpy(),
        ))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    steps.update()
    steps.close()
    for path in written:
        print(path)
    return 0


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_explore,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2pmae", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("i2pmae: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one readable line for users; --debug for developers
        if args.debug:
            raise
        print(f"i2pmae {args.command}: error: {_describe(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _describe(err: BaseException) -> str:
    """First line of the message; the exception type too when it is not a user-input error."""
    lines = str(err).strip().splitlines()
    message = lines[0] if lines else type(err).__name__
    return message if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {message}"

if __name__ == "__main__":
    sys.exit(main())
