"""Hostile shape files: what each one costs the loader, today and in a baseline tree, in the same run.

    .venv/bin/python benchmarks/bench_hostile.py                        # this tree only
    .venv/bin/python benchmarks/bench_hostile.py --baseline /tmp/base  # and a checkout of an older commit

Every case of ``tests/hostile_*.py`` (files that are small on disk and huge in what they imply) is built
once, then read by :func:`i2pmae.io.read_shape` in a fresh interpreter per tree, under an address-space cap
(``--cap-gib``, so that a baseline that allocates without bound is stopped there) and a wall-clock limit,
through ``tests/read_child.py`` (the tests' own measurement). The table gives each file's size, the outcome
(the first words of the error), the seconds and the peak resident memory the read added. Goal: no file
above the read limit (``--max-gib``) plus the interpreter's churn, none above about 10 s.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOSTILE_MODULES = ("hostile_ply", "hostile_text", "hostile_containers")
OUTCOME_CHARS = 90

READ_CHILD = REPO / "tests" / "read_child.py"  # the tests' measurement: VmHWM, capped address space


def cases() -> dict:
    """{name: (builder, description)} from every hostile-file module of the test suite."""
    sys.path.insert(0, str(REPO / "tests"))
    found = {}
    for name in HOSTILE_MODULES:
        try:
            found.update(importlib.import_module(name).CASES)
        except ModuleNotFoundError:
            print(f"(no tests/{name}.py)")
    return found


def read_in(tree: Path, path: Path, args: argparse.Namespace) -> dict:
    """One read of ``path`` with the i2pmae package of ``tree``, capped and timed."""
    env = {"PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, str(READ_CHILD), str(args.max_gib), str(args.cap_gib), str(path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env,
                              cwd=tree)
    except subprocess.TimeoutExpired:
        return {"outcome": f"still running after {args.timeout:g} s (stopped)", "seconds": args.timeout,
                "growth": None}
    if done.returncode != 0 or not done.stdout.strip():
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"outcome": f"died (exit {done.returncode}): {tail}", "seconds": None, "growth": None}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["outcome"] = result["outcome"].replace(f"{path.name}: ", "", 1)
    return result


def cell(result: dict) -> str:
    seconds = "–" if result["seconds"] is None else f"{result['seconds']:.1f} s"
    growth = "–" if result["growth"] is None else f"{result['growth'] / 2**20:,.0f} MiB"
    outcome = result["outcome"].replace("|", "/").replace("\n", " ")[:OUTCOME_CHARS]
    return f"{outcome} | {seconds} | {growth}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit, read the same way")
    parser.add_argument("--max-gib", type=float, default=1.0, help="read_shape's limit (the app's is 1)")
    parser.add_argument("--cap-gib", type=float, default=8.0, help="address-space cap of each read")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", nargs="*", default=None, help="case names containing these words")
    args = parser.parse_args()
    trees = ([("before", args.baseline)] if args.baseline else []) + [("now", REPO)]
    header = " | ".join(f"{label}: outcome | time | peak added" for label, _ in trees)
    print(f"read_shape(max_gib={args.max_gib:g}), address space capped at {args.cap_gib:g} GiB\n")
    print(f"| case | file | {header} |\n|---|---|{'---|---|---|' * len(trees)}")
    with tempfile.TemporaryDirectory() as folder:
        for name, (build, implies) in cases().items():
            if args.only and not any(word in name for word in args.only):
                continue
            case_dir = Path(folder) / str(abs(hash(name)))
            case_dir.mkdir()
            path = build(case_dir)
            size = f"{path.stat().st_size / 2**20:.2f} MB" if path.stat().st_size > 2**20 else \
                f"{path.stat().st_size / 1024:.0f} KB"
            cells = " | ".join(cell(read_in(tree, path, args)) for _, tree in trees)
            print(f"| {name} ({implies}) | {size} | {cells} |", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
