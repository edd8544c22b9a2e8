"""What several test files share: the micro run config, labelled synthetic clouds, a cheap fake teacher.

Test files import from here (``from helpers import ...``), never from one another.
"""

import numpy as np
import torch
import torch.nn.functional as F

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
