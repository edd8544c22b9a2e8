"""Load times of i2pmae.io per format, against trimesh and open3d reading the same file in the same run.

    .venv/bin/python benchmarks/bench_io.py            # a few minutes on 2 idle cores
    .venv/bin/python benchmarks/bench_io.py --quick    # the two targets and the small files only

``read`` is :func:`i2pmae.io.read_shape` (parse and check), ``to 2048`` is :func:`i2pmae.io.load_points`
(read, then sample 2048 points and normalise). Baselines only parse: trimesh ``load(process=False)``,
open3d ``read_triangle_mesh`` / ``read_point_cloud``. ``ratio`` is our read / the baseline, so < 1 means
ours is faster. Every time is the best of a few runs. The targets: a 5 M-point PCD and a 1 M-face mesh,
each to 2048 points in under a second.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh

from i2pmae.io import load_points, read_shape

REPEATS = 3  # runs per timing; the best one counts
SLOW_SECONDS = 2.0  # a run slower than this is not repeated
NUM_POINTS = 2048
TARGET_SECONDS = 1.0
LARGE_FACES = (500, 1000)  # grid cells of the 1 M-face sheet (2 triangles each)
SMALL_FACES = (100, 250)  # 50k faces: every format, text ones included
LARGE_POINTS = 5_000_000
SMALL_POINTS = 200_000
ORGANISED = (640, 480)  # a depth-camera frame, 25 % NaN
NAN_FRACTION = 0.25
SEED = 0


def sheet(cells: tuple[int, int]) -> trimesh.Trimesh:
    """A wavy height field of 2 * rows * cols triangles."""
    rows, cols = cells
    u, v = np.meshgrid(np.linspace(0, 2, cols + 1), np.linspace(0, 1, rows + 1))
    vertices = np.stack([u, v, 0.1 * np.sin(6 * u) * np.cos(4 * v)], axis=-1).reshape(-1, 3)
    corner = (np.arange(rows)[:, None] * (cols + 1) + np.arange(cols)[None]).ravel()  # (rows * cols,)
    quads = np.stack([corner, corner + 1, corner + cols + 2, corner + cols + 1], axis=1)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    return trimesh.Trimesh(vertices, faces, process=False)


def cloud(num_points: int, nan_fraction: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    points = rng.normal(size=(num_points, 3)).astype(np.float32)
    points[rng.random(num_points) < nan_fraction] = np.nan
    return points


def pcd_bytes(points: np.ndarray, data: str, width: int | None = None) -> bytes:
    width = width or len(points)
    header = (
        f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {width}\n"
        f"HEIGHT {len(points) // width}\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(points)}\nDATA {data}\n"
    ).encode()
    if data == "ascii":
        buffer = io.StringIO()
        np.savetxt(buffer, points, fmt="%.6g")
        return header + buffer.getvalue().encode()
    if data == "binary":
        return header + points.astype("<f4").tobytes()
    import lzf

    raw = b"".join(points[:, i].astype("<f4").tobytes() for i in range(3))
    compressed = lzf.compress(raw, 2 * len(raw))  # noise does not compress: allow the stream to grow
    return header + struct.pack("<II", len(compressed), len(raw)) + compressed


def mesh_files(mesh: trimesh.Trimesh, tag: str, text: bool) -> dict[str, bytes]:
    files = {
        f"{tag}.ply": trimesh.exchange.ply.export_ply(mesh, encoding="binary"),
        f"{tag}.stl": trimesh.exchange.stl.export_stl(mesh),
        f"{tag}.glb": mesh.export(file_type="glb"),
    }
    if text:
        files[f"{tag}_ascii.ply"] = trimesh.exchange.ply.export_ply(mesh, encoding="ascii")
        files[f"{tag}.obj"] = trimesh.exchange.obj.export_obj(mesh).encode()
        files[f"{tag}.off"] = trimesh.exchange.off.export_off(mesh).encode()
    return files


def cloud_files(quick: bool) -> dict[str, bytes]:
    small = cloud(SMALL_POINTS)
    frame = cloud(ORGANISED[0] * ORGANISED[1], NAN_FRACTION)
    buffer = io.BytesIO()
    np.save(buffer, small)
    files = {
        "cloud_5M.pcd": pcd_bytes(cloud(LARGE_POINTS), "binary"),
        "frame_ascii.pcd": pcd_bytes(frame, "ascii", ORGANISED[0]),
        "frame_compressed.pcd": pcd_bytes(frame, "binary_compressed", ORGANISED[0]),
        "cloud.npy": buffer.getvalue(),
    }
    if not quick:
        files["cloud.xyz"] = "".join(f"{x:.6g} {y:.6g} {z:.6g}\n" for x, y, z in small.tolist()).encode()
        files["cloud_5M_compressed.pcd"] = pcd_bytes(cloud(LARGE_POINTS), "binary_compressed")
    return files


def best_time(fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        if best > SLOW_SECONDS:
            break
    return best


@contextlib.contextmanager
def quiet():
    """open3d's C++ code prints warnings on stdout; keep them out of the table."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def baselines(path: Path) -> dict[str, Callable[[], object]]:
    import open3d

    suffix = path.suffix.lower()
    runs = {}
    if suffix in (".ply", ".stl", ".glb", ".obj", ".off"):
        runs["trimesh"] = lambda: trimesh.load(str(path), process=False)
        runs["open3d"] = lambda: open3d.io.read_triangle_mesh(str(path))
    if suffix in (".pcd", ".xyz"):
        runs["open3d"] = lambda: open3d.io.read_point_cloud(str(path), remove_nan_points=False)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the slow text formats")
    quick = parser.parse_args().quick
    files = {**mesh_files(sheet(LARGE_FACES), "mesh_1M", text=False), **cloud_files(quick)}
    if not quick:
        files.update(mesh_files(sheet(SMALL_FACES), "mesh_50k", text=True))
    print(f"{'file':<24} {'MB':>6} {'read':>8} {'to 2048':>8}   baselines (read, ratio ours / baseline)")
    slow = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            path = Path(tmp, name)
            path.write_bytes(data)
            read = best_time(lambda path=path: read_shape(path))
            total = best_time(lambda path=path: load_points(path, NUM_POINTS))
            with quiet():
                times = {lib: best_time(fn) for lib, fn in baselines(path).items()}
            cells = "   ".join(f"{lib} {t * 1e3:8.1f} ms  x{read / t:5.2f}" for lib, t in times.items())
            print(f"{name:<24} {len(data) / 2**20:6.1f} {read * 1e3:6.0f}ms {total * 1e3:6.0f}ms   {cells}")
            if name.startswith(("mesh_1M", "cloud_5M")) and total > TARGET_SECONDS:
                slow.append(f"{name}: {total:.2f} s to {NUM_POINTS} points")
    print(
        "\ntargets (5 M-point PCD, 1 M-face mesh, each to 2048 points under 1 s):", "; ".join(slow) or "met"
    )
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
