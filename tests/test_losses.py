"""Chamfer-L2 and the teacher-feature loss against brute-force NumPy references."""

import numpy as np
import pytest
import torch

from i2pmae.losses import chamfer_l2, feature_loss, nearest_sq_dists


def _chamfer_numpy(pred: np.ndarray, target: np.ndarray) -> float:
    """Official ChamferDistanceL2 by loops: mean of both nearest squared distances over all points."""
    d1, d2 = [], []
    for a, b in zip(pred, target, strict=True):
        for p in a:
            d1.append(min(float(((p - q) ** 2).sum()) for q in b))
        for q in b:
            d2.append(min(float(((p - q) ** 2).sum()) for p in a))
    return float(np.mean(d1) + np.mean(d2))


def test_chamfer_l2_matches_brute_force_with_unequal_set_sizes():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(5, 16, 3)), rng.normal(size=(5, 8, 3))
    got = chamfer_l2(torch.from_numpy(pred), torch.from_numpy(target))
    assert got.item() == pytest.approx(_chamfer_numpy(pred, target), rel=1e-12)


def test_chamfer_l2_per_set_reduction_and_extra_batch_dims():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(2, 3, 8, 3)), rng.normal(size=(2, 3, 8, 3))
    per_set = chamfer_l2(torch.from_numpy(pred), torch.from_numpy(target), reduction="none")
    assert per_set.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert per_set[i, j].item() == pytest.approx(_chamfer_numpy(pred[i, j][None], target[i, j][None]))


def test_chamfer_is_zero_for_permuted_copies_and_positive_otherwise():
    points = torch.randn(4, 8, 3)
    shuffled = points[:, torch.randperm(8)]
    assert chamfer_l2(points, shuffled).item() == 0.0
    assert chamfer_l2(points, shuffled + 0.1).item() > 0.0


def test_nearest_sq_dists_is_asymmetric_as_defined():
    a = torch.tensor([[[0.0, 0, 0], [10.0, 0, 0]]])
    b = torch.tensor([[[1.0, 0, 0]]])
    to_b, to_a = nearest_sq_dists(a, b)
    assert to_b.tolist() == [[1.0, 81.0]] and to_a.tolist() == [[1.0]]


def test_chamfer_gradient_flows_to_prediction():
    pred = torch.randn(3, 8, 3, requires_grad=True)
    chamfer_l2(pred, torch.randn(3, 8, 3)).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_feature_loss_is_mean_squared_error():
    rng = np.random.default_rng(2)
    pred, target = rng.normal(size=(6, 8, 3, 5)), rng.normal(size=(6, 8, 3, 5))
    got = feature_loss(torch.from_numpy(pred), torch.from_numpy(target))
    assert got.item() == pytest.approx(float(((pred - target) ** 2).mean()))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: chamfer_l2(torch.zeros(2, 4, 3), torch.zeros(3, 4, 3)), "leading dims"),
        (lambda: chamfer_l2(torch.zeros(4, 3), torch.zeros(4, 3), reduction="sum"), "reduction"),
        (lambda: feature_loss(torch.zeros(2, 3), torch.zeros(3, 2)), "shapes differ"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
