"""``i2pmae view``: the explorer's layers in an Open3D window, or in a browser over WebRTC (``--webrtc``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import DEFAULT_CHECKPOINT, shape_points

MAX_PORT = 65535


def _add_view(sub: argparse._SubParsersAction) -> None:
    from ..viewer import DEFAULT_HOST, DEFAULT_PORT, STRONG_TAU

    p = sub.add_parser("view", help="open the shape, its saliency, masks, reconstructions and surfaces in a "
                                    "3D window (or a browser page with --webrtc)")
    p.add_argument("shape", help="a shape file (ply obj off stl glb pcd xyz txt npy npz, or one compressed)")
    p.add_argument("--checkpoint", default=None,
                   help="pre-trained model for the reconstructions (default: the shipped one, when present)")
    p.add_argument("--tau", type=float, default=STRONG_TAU,
                   help="tau of the guided mask at start (default: %(default)g, the app's strong guidance)")
    p.add_argument("--mask-ratio", type=float, default=None, help="default: the explorer's config (0.8)")
    p.add_argument("--level", type=int, default=None,
                   help="token level at start, 0 (finest) to 2 (coarsest, the default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shape's points and of the first mask")
    p.add_argument("--num-points", type=int, default=None,
                   help="points sampled from the shape (default: the paper model's 2048)")
    p.add_argument("--teacher", default="efficientnet-lite0")
    p.add_argument("--teacher-weights", default=None, help="local weights file for the teacher")
    p.add_argument("--no-surfaces", action="store_true",
                   help="skip meshing the reconstructions (faster actions)")
    p.add_argument("--webrtc", action="store_true",
                   help="serve the window as a web page instead of opening it (headless or remote machines)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address the --webrtc page is served on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="port of the --webrtc page (default: %(default)s)")
    p.set_defaults(func=cmd_view)


def _initial_state(args: argparse.Namespace):
    """The state the viewer opens on, checked before anything loads (one-line errors)."""
    from ..explore import EXPLORER_CONFIG
    from ..viewer import DEFAULT_LEVEL, ViewerState, check_state

    if not 1 <= args.port <= MAX_PORT:
        raise ValueError(f"--port must be 1 to {MAX_PORT}, got {args.port}")
    if args.num_points is not None and args.num_points < max(EXPLORER_CONFIG.num_centers):
        raise ValueError(f"--num-points must be at least {max(EXPLORER_CONFIG.num_centers)} (the finest "
                         f"level's tokens), got {args.num_points}")
    state = ViewerState(seed=args.seed, tau=args.tau,
                        level=DEFAULT_LEVEL if args.level is None else args.level,
                        mask_ratio=EXPLORER_CONFIG.mask_ratio if args.mask_ratio is None else args.mask_ratio)
    try:
        return check_state(state, EXPLORER_CONFIG.num_levels)
    except ValueError as err:  # name the option, as the user typed it
        raise ValueError(f"--{str(err).replace('mask ratio', 'mask-ratio')}") from None


def cmd_view(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..viewer import check_display, run_viewer, webrtc_url

    state = _initial_state(args)
    check_display(args.webrtc)  # before the teacher and the model load: fail in a blink
    from ..checkpoints import load_checkpoint
    from ..explore import paper_model
    from ..teachers import load_teacher
    from ..viewer import ViewerSession, prepare_shape

    checkpoint = args.checkpoint or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.exists() else None)
    explorer = paper_model()
    with tqdm(total=4, desc="view", unit="step", file=sys.stderr) as steps:
        points = shape_points(args, args.num_points or explorer.cfg.num_points, seed=args.seed)
        teacher = load_teacher(args.teacher, weights_path=args.teacher_weights)
        steps.update()
        model = None if checkpoint is None else load_checkpoint(checkpoint)[0].eval()
        steps.update()
        shape = prepare_shape(Path(args.shape).name, points, teacher, model=model, explorer=explorer)
        steps.update()
        session = ViewerSession(shape, state, surfaces=not args.no_surfaces)
        session.scene()  # the first reconstruction and surfaces, under the bar rather than in the window
        steps.update()
    if checkpoint is None:
        print("i2pmae view: no checkpoint, reconstructions skipped", file=sys.stderr)
    if args.webrtc:
        url = webrtc_url(args.host, args.port)
        print(f"i2pmae view: serving at {url} (Ctrl+C to stop)", file=sys.stderr)
        tunnel_to = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        print(f"i2pmae view: from another machine: ssh -L {args.port}:{tunnel_to}:{args.port} "
              f"user@this-host, then open http://localhost:{args.port}", file=sys.stderr, flush=True)
    run_viewer(session, webrtc=args.webrtc, host=args.host, port=args.port)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    _add_view(sub)
