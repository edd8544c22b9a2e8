"""Random and 2D-guided token masks at the top level, propagated down the token hierarchy.

Bool masks mean True = masked (hidden from the encoder). At the top level every row keeps exactly
``num_visible(G, mask_ratio)`` visible tokens, so no padding is needed there; the lower levels follow from the
kNN neighbourhoods (DESIGN.md 1.5) and their visible counts vary per sample.

**Sampler.** 2D-guided masking keeps visible an ordered sample without replacement from
p = softmax(s / tau): the first G - int(ratio * G) entries of what
``torch.multinomial(p, G, replacement=False)`` draws. We sample it with the Gumbel-top-k trick: with g_i
i.i.d. standard Gumbel, the keys s_i / tau + g_i sorted in decreasing order are distributed exactly as that
sequential draw (Plackett-Luce; Yellott 1977, Kool et al. 2019 "Stochastic Beams and Where to Find Them").
We prefer it to ``torch.multinomial`` because

- it is one ``rand`` and three stable sorts for the whole batch, on the input's device, seeded by a
  ``torch.Generator``;
- it never normalises p: keys are taken relative to the row maximum, so tau -> 0 neither overflows nor
  collapses the softmax to zeros (``multinomial`` refuses fewer non-zero weights than samples). Ties that tiny
  temperatures create (the noise lost to rounding, or keys at -inf) are broken by saliency, then at random,
  which is the tau -> 0 limit: the most salient tokens stay visible, equal ones chosen uniformly;
- at tau = inf the keys are the noise alone, a monotone map of the uniform noise that :func:`random_mask`
  sorts, so the same generator state gives exactly the random mask.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from i2pmae.geometry import Hierarchy

__all__ = ["guided_mask", "num_visible", "propagate_mask", "random_mask", "sample_order"]


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    """Visible tokens out of ``num_tokens`` at ``mask_ratio``: ``num_tokens - int(mask_ratio * num_tokens)``.

    Always at least 1 because ``mask_ratio < 1``; e.g. 13 of 64 at the paper's ratio 0.8.
    """
    _check_mask_ratio(mask_ratio)
    num_tokens = _positive_int(num_tokens, "num_tokens")
    return num_tokens - int(mask_ratio * num_tokens)


def random_mask(
    batch_size: int,
    num_tokens: int,
    mask_ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform random mask (Point-M2AE): argsort uniform noise, the first ``num_visible`` tokens stay visible.

    Args:
        batch_size: B.
        num_tokens: G (top-level tokens).
        mask_ratio: fraction masked, in [0, 1).
        generator: optional seeded generator; it must live on ``device``.
        device: where the mask is built; defaults to the generator's device, else the CPU.

    Returns:
        (B, G) bool, True = masked, exactly ``num_visible(G, mask_ratio)`` False per row.
    """
    keep = num_visible(num_tokens, mask_ratio)
    batch_size = _positive_int(batch_size, "batch_size")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.rand(batch_size, num_tokens, generator=generator, device=device)  # (B, G)
    return _mask_from_order(_descending_order(noise), keep)


def sample_order(
    saliency: Tensor, *, temperature: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Ordered sample of all tokens without replacement from softmax(saliency / temperature), per row.

    Args:
        saliency: (B, G) finite real scores; higher = more likely drawn early (= visible).
        temperature: tau > 0, ``math.inf`` allowed (uniform order); tau = 1 is the official behaviour.
        generator: optional seeded generator on ``saliency.device``.

    Returns:
        (B, G) long, a permutation of the G tokens per row, first drawn first.
    """
    _check_saliency(saliency)
    _check_temperature(temperature)
    return _gumbel_order(saliency, temperature, generator)


def guided_mask(
    saliency: Tensor,
    mask_ratio: float,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """2D-guided mask (I2P-MAE): the first ``num_visible`` tokens of :func:`sample_order` stay visible.

    Args:
        saliency: (B, G) finite token saliency (e.g. the teacher's saliency at the top-level centres).
        mask_ratio: fraction masked, in [0, 1).
        temperature: tau in softmax(saliency / tau); tau -> 0 keeps the most salient tokens, ``math.inf``
            gives :func:`random_mask` (the same mask for the same generator state).
        generator: optional seeded generator on ``saliency.device``.

    Returns:
        (B, G) bool, True = masked, exactly ``num_visible(G, mask_ratio)`` False per row.
    """
    _check_saliency(saliency)
    _check_temperature(temperature)
    keep = num_visible(saliency.shape[-1], mask_ratio)
    return _mask_from_order(_gumbel_order(saliency, temperature, generator), keep)


def propagate_mask(top_mask: Tensor, hierarchy: Hierarchy) -> list[Tensor]:
    """Propagate a top-level mask down the hierarchy (DESIGN.md 1.5).

    A level s-1 token is visible iff it is among ``hierarchy.neighbor_idx[s]`` of a visible level-s token.
    Masked tokens contribute nothing. (The official code zeroes their flattened, batch-offset neighbour
    indices before scattering, which also makes token 0 of the first sample visible at every lower level.)

    Args:
        top_mask: (B, G_top) bool, True = masked, at the last (coarsest) level.
        hierarchy: its ``neighbor_idx[s]`` (B, G_s, K_s) index level s-1 tokens for s >= 1.

    Returns:
        One (B, G_s) bool mask per level, level 0 (finest) first; the last is ``top_mask`` itself.
    """
    neighbor_idx = hierarchy.neighbor_idx
    _check_propagation_inputs(top_mask, neighbor_idx)
    masks = [top_mask]
    for level in range(len(neighbor_idx) - 1, 0, -1):
        num_lower = neighbor_idx[level - 1].shape[1]
        masks.append(_propagate_one_level(masks[-1], neighbor_idx[level], num_lower))
    return masks[::-1]


def _gumbel_order(saliency: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """Gumbel-top-k order of (B, G) saliency (see the module docstring) -> (B, G) long permutation."""
    dtype = torch.promote_types(saliency.dtype, torch.float32)
    saliency = saliency.detach().to(dtype)
    # Same draw as random_mask (float32 uniforms), so tau = inf reproduces it exactly.
    noise = torch.rand(saliency.shape, generator=generator, device=saliency.device)  # (B, G)
    gumbel = -torch.log(-torch.log(noise.to(dtype)))  # (B, G), -inf where noise == 0
    # A python temperature below the dtype's smallest normal would be cast to 0 (0 / 0 = NaN at the maximum).
    scale = max(temperature, torch.finfo(dtype).tiny)
    keys = (saliency - saliency.amax(dim=-1, keepdim=True)) / scale + gumbel  # (B, G), log p + const + noise
    # Saliency only breaks ties that tiny temperatures create; at tau = inf it must carry no information.
    tiebreak = saliency if math.isfinite(temperature) else torch.zeros_like(saliency)
    return _descending_order(keys, tiebreak, noise)


def _descending_order(*keys: Tensor) -> Tensor:
    """Lexicographic descending argsort along the last dim; ``keys[0]`` is the primary key, all (B, G)."""
    order = torch.argsort(keys[-1], dim=-1, descending=True, stable=True)  # (B, G)
    for key in reversed(keys[:-1]):
        ranks = torch.argsort(key.gather(-1, order), dim=-1, descending=True, stable=True)  # (B, G)
        order = order.gather(-1, ranks)  # (B, G)
    return order


def _mask_from_order(order: Tensor, keep: int) -> Tensor:
    """(B, G) permutation -> (B, G) bool mask, True = masked, with the first ``keep`` tokens visible."""
    mask = torch.ones(order.shape, dtype=torch.bool, device=order.device)  # (B, G)
    return mask.scatter_(-1, order[:, :keep], False)


def _propagate_one_level(upper_mask: Tensor, neighbors: Tensor, num_lower: int) -> Tensor:
    """(B, G_s) mask, (B, G_s, K_s) neighbours into level s-1 -> (B, G_{s-1}) mask, True = masked."""
    visible = (~upper_mask).unsqueeze(-1).expand(neighbors.shape)  # (B, G_s, K_s)
    hits = torch.zeros(upper_mask.shape[0], num_lower, dtype=torch.long, device=upper_mask.device)
    hits.scatter_add_(1, neighbors.flatten(1).long(), visible.flatten(1).long())  # (B, G_{s-1})
    return hits == 0


def _positive_int(value: int, name: str) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _check_mask_ratio(mask_ratio: float) -> None:
    if not isinstance(mask_ratio, numbers.Real) or not 0 <= mask_ratio < 1:
        raise ValueError(
            f"mask_ratio must be a number in [0, 1) (1 would hide every token), got {mask_ratio!r}"
        )


def _check_temperature(temperature: float) -> None:
    if not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(
            f"temperature must be > 0 (math.inf for uniform random masking), got {temperature!r}"
        )


def _check_saliency(saliency: Tensor) -> None:
    if not isinstance(saliency, Tensor) or saliency.ndim != 2 or saliency.numel() == 0:
        shape = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise ValueError(f"saliency must be a non-empty (B, G) tensor, got {shape}")
    if not saliency.is_floating_point():
        raise TypeError(f"saliency must be a floating-point tensor, got {saliency.dtype}")
    if not bool(torch.isfinite(saliency).all()):  # one sync on the happy path; count only on failure
        num_nan, num_inf = int(torch.isnan(saliency).sum()), int(torch.isinf(saliency).sum())
        raise ValueError(
            f"saliency must be finite, got {num_nan} NaN and {num_inf} infinite of {saliency.numel()} values"
        )


def _check_propagation_inputs(top_mask: Tensor, neighbor_idx: list[Tensor]) -> None:
    if not neighbor_idx:
        raise ValueError("hierarchy has no levels")
    top_shape = tuple(neighbor_idx[-1].shape[:2])
    if not isinstance(top_mask, Tensor) or top_mask.dtype != torch.bool or tuple(top_mask.shape) != top_shape:
        got = (top_mask.dtype, tuple(top_mask.shape)) if isinstance(top_mask, Tensor) else type(top_mask)
        raise ValueError(
            f"top_mask must be a bool tensor of the top level's shape (B, G_top) = {top_shape}, got {got}"
        )
    for level in range(1, len(neighbor_idx)):
        neighbors, num_lower = neighbor_idx[level], neighbor_idx[level - 1].shape[1]
        if neighbors.ndim != 3 or neighbors.shape[0] != top_shape[0] or neighbors.is_floating_point():
            raise ValueError(
                f"neighbor_idx[{level}] must be an integer (B={top_shape[0]}, G_s, K_s) tensor, "
                f"got {neighbors.dtype} {tuple(neighbors.shape)}"
            )
        if neighbors.numel() and not 0 <= int(neighbors.min()) <= int(neighbors.max()) < num_lower:
            raise ValueError(
                f"neighbor_idx[{level}] must index the {num_lower} level-{level - 1} tokens, "
                f"got values in [{int(neighbors.min())}, {int(neighbors.max())}]"
            )
