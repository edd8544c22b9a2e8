"""``i2pmae explore``: depth views, saliency, random vs guided masks and reconstructions of one shape."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import DEFAULT_CHECKPOINT, shape_points

DEFAULT_TEMPERATURES = (1.0, 0.003)


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="write depth views, saliency, random vs guided masks as PNG")
    p.add_argument("shape", help="a shape file (ply obj off stl glb pcd xyz txt npy npz, or one compressed)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-points", type=int, default=None,
                   help="points sampled from the shape (default: the paper model's 2048)")
    p.add_argument("--teacher", default="efficientnet-lite0")
    p.add_argument("--teacher-weights", default=None, help="local weights file for the teacher")
    p.add_argument("--mask-ratio", type=float, default=None, help="default: each model's config (0.8)")
    p.add_argument(
        "--temperature", type=float, nargs="+", default=list(DEFAULT_TEMPERATURES),
        help="tau of the guided mask, one panel each (1 = paper; the teacher's saliency sums to 1 over "
        "14x14 patches, so a small tau such as 0.003 shows the guidance clearly)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render-level", type=int, default=1, choices=(0, 1, 2),
                   help="level of the tokens in the Open3D renders (default 1: 256 tokens, the paper's "
                   "reconstructed level)")
    p.add_argument(
        "--checkpoint", default=None,
        help="pre-trained model for the reconstructions (default: the shipped one, when present)",
    )
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..checkpoints import load_checkpoint
    from ..explore import (
        analyse_shape,
        paper_model,
        reconstruct_shape,
        write_reconstructions,
        write_renders,
        write_report,
    )
    from ..render import RenderError
    from ..teachers import load_teacher

    checkpoint = args.checkpoint or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.exists() else None)
    name = Path(args.shape).name
    explorer = paper_model()
    with tqdm(total=5, desc="explore", unit="step", file=sys.stderr) as steps:
        points = shape_points(args, args.num_points or explorer.cfg.num_points, seed=args.seed)
        teacher = load_teacher(args.teacher, weights_path=args.teacher_weights)
        steps.update()
        analysis = analyse_shape(explorer, points, teacher)  # the one teacher run of this shape
        steps.update()
        written = write_report(
            explorer, analysis, args.out, name=name, teacher_name=teacher.name,
            mask_ratio=args.mask_ratio, temperatures=args.temperature, seed=args.seed,
        )
        steps.update()
        rec, tau = None, args.temperature[-1]
        if checkpoint is None:
            print("i2pmae explore: no checkpoint, reconstructions skipped", file=sys.stderr)
        else:
            model = load_checkpoint(checkpoint)[0].eval()
            mask_ratio = model.cfg.mask_ratio if args.mask_ratio is None else args.mask_ratio
            rec = reconstruct_shape(model, analysis, mask_ratio=mask_ratio, temperature=tau, seed=args.seed)
            written += write_reconstructions(rec, args.out, name=name, mask_ratio=mask_ratio, temperature=tau,
                                             seed=args.seed)
        steps.update()
        try:  # the stills show the same reconstruction as the figures
            written += write_renders(analysis, args.out, name=name, reconstruction=rec,
                                     level=args.render_level, mask_ratio=args.mask_ratio, temperature=tau,
                                     seed=args.seed)
        except RenderError as err:
            print(f"i2pmae explore: {err}; the PNG figures above show the same layers", file=sys.stderr)
        steps.update()
    for path in written:
        print(path)
    if rec is not None:
        _summarise_metrics(Path(args.out))
    return 0


def _summarise_metrics(out: Path) -> None:
    """The reconstruction's metrics per mask into ``summary.json`` (key "reconstruction") and on stderr,
    one line each (stdout lists the files written)."""
    import json

    reconstruction = json.loads((out / "reconstruction.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "reconstruction": reconstruction}, indent=2))
    for kind, m in reconstruction["metrics"].items():
        print(f"reconstruction, {kind} mask: Chamfer-L2 {m['chamfer_l2_per_token']:.3e} per token, "
              f"{m['chamfer_l2']:.3e} over all masked points; Hausdorff {m['hausdorff']:.3f}; "
              f"F-score@{m['threshold']:g} {m['fscore']:.3f}", file=sys.stderr)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    _add_explore(sub)
