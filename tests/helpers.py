"""What several test files share: small model configs, synthetic clouds, fake teachers, the app's test server.

Test files import from here (``from helpers import ...``), never from one another.
"""

import contextlib
import functools
import importlib.util
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from i2pmae.data import save_npz
from i2pmae.teachers import Teacher

MICRO_MODEL = {
    "num_points": 64, "num_centers": [32, 16, 8], "group_sizes": [8, 4, 4],
    "point_embed_widths": [16, 32, 64],
    "encoder_dims": [16, 32, 64], "encoder_depths": [1, 1, 1], "encoder_heads": [2, 2, 2],
    "decoder_dims": [64, 32], "decoder_depths": [1, 1], "decoder_heads": [2, 2],
    "masking": "random", "target_2d": False, "teacher": "efficientnet-lite0", "teacher_dim": 112,
}  # fmt: skip
MICRO_TRAIN = {
    "epochs": 3, "warmup_epochs": 1, "batch_size": 4, "lr": 2e-3, "log_every": 1, "progress": False,
}  # fmt: skip
GUIDED = {"masking": "guided", "target_2d": True}  # model overrides: 2D-guided masks and the 2D target
CLASSES = ("sphere", "cube", "disc")


def micro_config(model=None, train=None):
    """A run config document (``model`` / ``train`` sections) of the micro model, with overrides."""
    return {"model": {**MICRO_MODEL, **(model or {})}, "train": {**MICRO_TRAIN, **(train or {})}}


def shapes(num_shapes: int, num_points: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy spheres, cube surfaces and discs of random size: (S, P, 3) points and (S,) labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_shapes) % len(CLASSES)
    out = []
    for label in labels:
        v = rng.normal(size=(num_points, 3))
        if label == 0:
            p = v / np.linalg.norm(v, axis=1, keepdims=True)
        elif label == 1:
            p = v / np.abs(v).max(axis=1, keepdims=True)
        else:
            p = v * np.array([1.0, 1.0, 0.02])
        out.append(p * rng.uniform(0.5, 2.0) + 0.01 * rng.normal(size=p.shape))
    return np.stack(out).astype(np.float32), labels


def write_data(path, num_shapes=16, seed=0):
    """:func:`shapes` as an ``.npz`` data set at ``path``; returns ``path``."""
    points, labels = shapes(num_shapes, seed=seed)
    save_npz(path, points, labels, CLASSES)
    return path


class FakeTeacher(Teacher):
    """A fixed random 1x1 convolution of 16x16-pooled images: cheap, deterministic, teacher-shaped.

    It counts its calls (``calls``), so a test can tell whether the teacher ran.
    """

    def __init__(self, dim: int = MICRO_MODEL["teacher_dim"]) -> None:
        super().__init__(name=MICRO_MODEL["teacher"], dim=dim)
        self.proj = torch.nn.Conv2d(3, dim, 1)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=gen))
        self.calls = 0
        self.freeze()

    def forward(self, images):
        self.calls += 1
        pooled = F.avg_pool2d(images, 16)  # (n, 3, 14, 14)
        features = self.proj(pooled)  # (n, C, 14, 14)
        return features, torch.softmax(features.mean(1).flatten(1), -1).view_as(pooled[:, 0])


# ------------------------------------------------------------------------------------------------ model
STAND_IN_DIM = 8
SMALL_MODEL = dict(  # a 3-level model of 256 points, quick to run, with the stand-in teacher
    num_points=256,
    num_centers=(64, 32, 8),
    group_sizes=(8, 4, 4),
    point_embed_widths=(16, 16, 32),
    encoder_dims=(16, 32, 64),
    encoder_depths=(1, 1, 1),
    encoder_heads=(2, 2, 2),
    decoder_dims=(64, 32),
    decoder_heads=(2, 2),
    drop_path=0.0,
    teacher="stand-in",
    teacher_dim=STAND_IN_DIM,
)


class StandInTeacher(Teacher):
    """Random-weights teacher with the real interface: a 16x16-patch conv, saliency = softmax of energy.

    Its weights keep requires_grad=True on purpose, so a gradient leaking into the teacher would show.
    """

    def __init__(self) -> None:
        super().__init__(name="stand-in", dim=STAND_IN_DIM)
        self.patch = nn.Conv2d(3, STAND_IN_DIM, kernel_size=16, stride=16)  # 224 -> 14

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.patch(images)  # (n, C, 14, 14)
        saliency = features.square().mean(1).flatten(1).softmax(-1).reshape(-1, 14, 14)  # (n, 14, 14)
        return features, saliency


def make_clouds(batch: int, num_points: int, seed: int = 0) -> torch.Tensor:
    """(B, N, 3) different synthetic surfaces (ellipsoids, boxes), centred, in the unit sphere."""
    g = torch.Generator().manual_seed(seed)
    clouds = []
    for i in range(batch):
        direction = torch.randn(num_points, 3, generator=g)
        if i % 2:
            surface = direction / direction.abs().amax(-1, keepdim=True)  # box
        else:
            surface = direction / direction.norm(dim=-1, keepdim=True)  # sphere
        cloud = surface * (0.4 + torch.rand(3, generator=g))  # anisotropic scale
        cloud = cloud - cloud.mean(0)
        clouds.append(cloud / cloud.norm(dim=-1).max())
    return torch.stack(clouds)


# ------------------------------------------------------------------------------------------------ app
# The app's modules import gradio: they are imported inside the functions, so the core's tests never load it.
SMALL_SUPPORT_CLASSES = ("chair", "table")
SMALL_SUPPORT_PER_CLASS = 22  # 2 shots + 20 queries, the least the few-shot protocol accepts


def write_small_support(path: Path) -> Path:
    """A 2-class slice of the bundled support shapes, so that feature extraction stays quick in tests."""
    from app.paths import SUPPORT_PATH

    with np.load(SUPPORT_PATH) as data:
        classes = list(data["classes"])
        keep = np.concatenate([np.flatnonzero(data["labels"] == classes.index(c))[:SMALL_SUPPORT_PER_CLASS]
                               for c in SMALL_SUPPORT_CLASSES])
        labels = np.searchsorted([classes.index(c) for c in SMALL_SUPPORT_CLASSES], data["labels"][keep])
        np.savez(path, points=data["points"][keep], labels=labels, classes=np.array(SMALL_SUPPORT_CLASSES),
                 names=data["names"][keep])
    return path


def tiny_model(num_centers=(256, 128, 32), num_points=1024):
    """A small randomly initialised I2PMAE with the shipped teacher, tokenised like the shipped model."""
    from i2pmae.config import I2PMAEConfig
    from i2pmae.model import I2PMAE

    torch.manual_seed(0)
    cfg = I2PMAEConfig(num_points=num_points, num_centers=num_centers, encoder_dims=(24, 48, 96),
                       encoder_depths=(1, 1, 1), encoder_heads=(2, 2, 2), decoder_dims=(96, 48),
                       decoder_heads=(2, 2), point_embed_widths=(32, 64, 128), teacher="efficientnet-lite0",
                       teacher_dim=112)
    return I2PMAE(cfg).eval()


def save_tiny_checkpoint(path: Path) -> Path:
    """:func:`tiny_model` as a checkpoint file."""
    from i2pmae.checkpoints import save_checkpoint

    return save_checkpoint(path, tiny_model())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(folder: Path) -> Iterator[str]:
    """The explorer on a free local port with a small random checkpoint (so every panel has a model)."""
    import pytest

    from app import support_set
    from app.resources import CHECKPOINT_ENV
    from app.ui import build_demo, launch_options

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CHECKPOINT_ENV, str(save_tiny_checkpoint(folder / "tiny.safetensors")))
        mp.setattr(support_set, "SUPPORT_PATH", write_small_support(folder / "support.npz"))
        demo = build_demo()
        options = {**launch_options(), "server_port": _free_port(), "quiet": True}
        _, url, _ = demo.launch(prevent_thread_lock=True, **options)
        try:
            yield url
        finally:
            demo.close()


READ_CHILD = Path(__file__).resolve().parent / "read_child.py"


def reads_in_child(paths, max_gib: float, cap_gib: float = 8.0, timeout: float = 600) -> list[dict]:
    """``read_shape(path, max_gib=...)`` of each path, in one fresh interpreter capped at ``cap_gib`` of
    address space (tests/read_child.py): per path {"path", "outcome": "read: ..." or "ShapeError: ...",
    "seconds", "growth": the peak resident memory during the read minus the resident memory before it}."""
    done = subprocess.run([sys.executable, str(READ_CHILD), str(max_gib), str(cap_gib), *map(str, paths)],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def read_in_child(path, max_gib: float, timeout: float = 120) -> dict:
    """:func:`reads_in_child` of one file."""
    return reads_in_child([path], max_gib, timeout=timeout)[0]


@functools.cache
def ablation_script():
    """``scripts/ablation.py`` as a module (it is a script, not part of the package)."""
    return script_module("ablation")


def script_module(name: str):
    """``scripts/<name>.py`` as a module."""
    script = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
