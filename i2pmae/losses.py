"""Reconstruction losses of I2P-MAE: Chamfer-L2 on point sets and MSE on teacher features (DESIGN.md 1.8)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["chamfer_l2", "feature_loss", "nearest_sq_dists"]

REDUCTIONS = ("mean", "none")


def nearest_sq_dists(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Squared distance from each point to the nearest point of the other set.

    Args:
        a: (..., P, 3); b: (..., Q, 3) with the same leading dims.

    Returns:
        (..., P) min over b, and (..., Q) min over a. Exact pairwise differences (no ``cdist`` matmul
        shortcut): the sets are small (8-16 points per token).
    """
    if a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"point sets must share leading dims and coordinates, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    sq = (a.unsqueeze(-2) - b.unsqueeze(-3)).square().sum(-1)  # (..., P, Q)
    return sq.amin(dim=-1), sq.amin(dim=-2)


def chamfer_l2(pred: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """Chamfer-L2 as the official ``ChamferDistanceL2``: mean d1^2 + mean d2^2.

    Args:
        pred: (..., P, 3) predicted points.
        target: (..., Q, 3) true points; P and Q may differ.
        reduction: ``mean`` -> scalar, means over all sets; ``none`` -> (...) one value per set.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    d1, d2 = nearest_sq_dists(pred, target)
    if reduction == "mean":
        return d1.mean() + d2.mean()
    return d1.mean(dim=-1) + d2.mean(dim=-1)


def feature_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between predicted and teacher features of the same shape (official ``MSELoss``)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    return F.mse_loss(pred, target.to(pred.dtype))
