"""``i2pmae checkpoint inspect|convert`` and ``i2pmae data check``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_max_gib

EXIT_CHECK_FAILED = 1


def _add_checkpoint(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checkpoint", help="inspect or convert checkpoints")
    actions = p.add_subparsers(dest="action", required=True)
    inspect = actions.add_parser("inspect", help="config, teacher, classes, parameter count, key summary; "
                                 "exit status 1 naming every tensor with NaN or infinite values")
    inspect.add_argument("path")
    inspect.set_defaults(func=cmd_checkpoint_inspect)
    convert = actions.add_parser("convert", help="official I2P-MAE / Point-M2AE .pth -> our safetensors")
    convert.add_argument("src", help="official .pth")
    convert.add_argument("dst", help="output .safetensors")
    convert.add_argument("--config", required=True, help="YAML whose model: section matches the checkpoint")
    convert.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    convert.set_defaults(func=cmd_checkpoint_convert)


def _key_summary(keys_and_shapes: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    """One line per top-level module: tensors and elements."""
    import math

    groups: dict[str, list[int]] = {}
    for key, shape in keys_and_shapes:
        entry = groups.setdefault(key.split(".")[0], [0, 0])
        entry[0] += 1
        entry[1] += math.prod(shape)
    return [f"  {name:<22s} {n:4d} tensors {elems:>12,d} values" for name, (n, elems) in groups.items()]


def cmd_checkpoint_inspect(args: argparse.Namespace) -> int:
    from ..checkpoints import nonfinite_tensors, read_safetensors_header
    from ..evaluate import PROBE_FORMAT

    path = Path(args.path)
    header, shapes = read_safetensors_header(path)  # a .pth is refused here, never unpickled
    is_probe = header.get("format") == PROBE_FORMAT
    damaged = nonfinite_tensors(path, minus_inf_ok={"bias"} if is_probe else ())  # -inf: never predicted
    if not is_probe:
        _print_checkpoint(path, shapes)  # from the header: shown for a damaged file too
    elif not damaged:  # load_probe refuses a damaged probe
        _print_probe(path)
    if damaged:
        _print_damaged(path, damaged, len(shapes))
        return EXIT_CHECK_FAILED
    return 0


def _print_probe(path: Path) -> None:
    from ..evaluate import load_probe

    probe = load_probe(path)
    print(f"{path}: linear probe, {len(probe.classes)} classes, {probe.weight.shape[1]} features")
    print(f"  classes: {', '.join(probe.classes)}")
    print(f"  fit: {json.dumps(probe.info)}")


def _print_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    from ..checkpoints import checkpoint_info

    info = checkpoint_info(path)
    meta, cfg = info["metadata"], info["config"]
    print(f"{path}: {info['model_class']}, {info['num_parameters']:,} parameters in {info['num_tensors']} "
          f"tensors ({path.stat().st_size / 2**20:.1f} MiB)")
    print(f"  teacher: {meta.get('teacher', cfg.teacher)} ({cfg.teacher_dim} feature channels)")
    classes = meta.get("classes")
    if classes:
        print(f"  classes ({len(classes)}): {', '.join(classes)}")
    for key in ("kind", "data", "epoch", "step", "epochs", "val_acc", "best_val_acc", "converted_from"):
        if key in meta:
            print(f"  {key}: {meta[key]}")
    print("  config: " + json.dumps(cfg.to_dict()))
    print("  keys:")
    print("\n".join(_key_summary(list(shapes.items()))))


def _print_damaged(path: Path, damaged: dict[str, tuple[int, int]], num_tensors: int) -> None:
    """The tensors holding NaN or infinite values; loading such a file is refused (require_finite)."""
    print(f"{path}: DAMAGED: {len(damaged)} of {num_tensors} tensors hold NaN or infinite values (a diverged "
          "run or a corrupt file); loading it is refused:")
    for name, (bad, total) in damaged.items():
        print(f"  {name}: {bad:,} of {total:,} values not finite")


def cmd_checkpoint_convert(args: argparse.Namespace) -> int:
    import yaml

    from ..checkpoints import convert_official_checkpoint
    from ..config import load_run_config

    with open(args.config, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    document.pop("data", None)
    model_cfg, _ = load_run_config(document, args.overrides)
    out = convert_official_checkpoint(args.src, args.dst, model_cfg)
    print(f"{out}: converted from {args.src} (every key mapped; the CLIP teacher dropped)")
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data-set tools")
    actions = p.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a data set; print download steps for missing files")
    check.add_argument("path")
    add_max_gib(check)
    check.set_defaults(func=cmd_data_check)


def cmd_data_check(args: argparse.Namespace) -> int:
    from ..data import check_dataset

    report = check_dataset(args.path, max_gib=args.max_gib)
    print(report)
    return 0 if report.ok else EXIT_CHECK_FAILED


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register this group's commands."""
    _add_checkpoint(sub)
    _add_data(sub)
