"""Building blocks of the hierarchical encoder/decoder (Point-M2AE / I2P-MAE, DESIGN.md 1.6-1.7).

Transformer blocks are timm's (``timm.models.vision_transformer.Block``: pre-norm, SDPA attention with a
manual path, ``Mlp``, ``DropPath``); this module only adds the point-cloud parts around them. Module and
attribute names follow the official code where that costs nothing, so official checkpoints map by name
(see ``checkpoints.py``).

Token packing: the visible tokens of a level are moved to the front with a stable argsort of the mask
(:func:`pack`), padded to the longest row, and hidden from attention by a key-padding mask with SDPA
polarity (True = may attend). Padded query rows attend to real tokens, so no row is ever fully masked, and
their outputs are zeroed by :func:`unpack`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from .geometry import gather, knn

POINT_CHANNELS = 3  # xyz
INTERP_NEIGHBORS = 3  # decoder upsampling: inverse-distance weights over the 3 nearest coarser tokens
INTERP_EPS = 1e-8  # official constant in 1 / (d^2 + eps)


def drop_path_rates(max_rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Stochastic-depth rates linspace(0, max_rate, sum(depths)), split per stage (official schedule)."""
    rates = torch.linspace(0, max_rate, sum(depths)).tolist()
    starts = [sum(depths[:i]) for i in range(len(depths))]
    return [rates[start : start + depth] for start, depth in zip(starts, depths, strict=True)]


def positional_mlp(dim: int) -> nn.Sequential:
    """Centre coordinates (..., 3) -> positional embedding (..., dim): Linear, GELU, Linear."""
    return nn.Sequential(nn.Linear(POINT_CHANNELS, dim), nn.GELU(), nn.Linear(dim, dim))


class PointConv(nn.Conv1d):
    """Pointwise (kernel 1) Conv1d applied to channels-last input: (..., C_in) -> (..., C_out).

    Keeps the official parameter layout (weight (C_out, C_in, 1)) but runs as a matmul, which is several
    times faster than a 1x1 convolution on CPU and needs no transposes.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.squeeze(-1), self.bias)


class PointBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over channels-last input (..., C): statistics per channel over all other dims."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def conv_bn_act(in_channels: int, out_channels: int, act: type[nn.Module] | None) -> list[nn.Module]:
    """[PointConv, PointBatchNorm, act()] (act omitted when None), channels-last."""
    layers = [PointConv(in_channels, out_channels), PointBatchNorm(out_channels)]
    return layers + ([act()] if act is not None else [])


class TokenEmbed(nn.Module):
    """Two-stage max-pooled PointNet over a neighbourhood: (B, G, K, C_in) -> (B, G, C_out).

    ``first_conv`` (C_in -> hidden -> C_mid) runs per member and is max-pooled; ``second_conv``
    (2 C_mid -> hidden2 -> C_out) sees [pooled, member] for every member and is max-pooled again.
    Level 0 embeds xyz offsets, levels >= 1 merge the previous level's tokens at their kNN.

    The first layer of ``second_conv`` is applied to the concatenation without building it: its weight is
    split into the pooled half (applied once per group) and the member half, which halves the largest
    matmul of the level-0 embedding. Max-pooling uses ``max`` with indices, whose backward is a scatter.
    """

    def __init__(self, *, in_channels: int, out_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        hidden, mid, hidden2 = widths
        self.out_channels = out_channels
        self.first_conv = nn.Sequential(*conv_bn_act(in_channels, hidden, nn.ReLU), PointConv(hidden, mid))
        self.second_conv = nn.Sequential(
            *conv_bn_act(2 * mid, hidden2, nn.ReLU), PointConv(hidden2, out_channels)
        )

    def forward(self, groups: Tensor) -> Tensor:
        batch, num_groups, group_size, channels = groups.shape
        x = self.first_conv(groups.reshape(batch * num_groups, group_size, channels))  # (B G, K, C_mid)
        pooled = x.max(dim=1, keepdim=True).values  # (B G, 1, C_mid)
        fuse = self.second_conv[0]
        weight_pooled, weight_member = fuse.weight.squeeze(-1).chunk(2, dim=1)  # (hidden2, C_mid) each
        x = F.linear(x, weight_member, fuse.bias) + F.linear(pooled, weight_pooled)  # (B G, K, hidden2)
        x = self.second_conv[1:](x).max(dim=1).values  # (B G, C_out)
        return x.reshape(batch, num_groups, self.out_channels)  # (B, G, C_out)


def token_embed_widths(level: int, in_channels: int, out_channels: int, point_widths: Sequence[int]) -> tuple:
    """Hidden widths of :class:`TokenEmbed`: ``point_widths`` at level 0; (C_in, C_in, C_out) when merging."""
    return tuple(point_widths) if level == 0 else (in_channels, in_channels, out_channels)


class TransformerStage(nn.Module):
    """``depth`` pre-norm ViT blocks with the positional embedding added before every block.

    Official ``Encoder_Block`` / ``Decoder_Block``: ``x = block(x + pos)`` for each block.
    """

    def __init__(self, *, dim: int, depth: int, num_heads: int, drop_path: Sequence[float]) -> None:
        super().__init__()
        if len(drop_path) != depth:
            raise ValueError(f"need one drop-path rate per block: depth {depth}, got {len(drop_path)} rates")
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=4.0, qkv_bias=False, drop_path=rate, norm_layer=nn.LayerNorm)
            for rate in drop_path
        )

    def forward(self, x: Tensor, pos: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x, pos (B, L, C); attn_mask None or bool broadcastable to (B, heads, L, L), True = may attend."""
        for block in self.blocks:
            x = block(x + pos, attn_mask=attn_mask)
        return x


class ResidualConv(nn.Module):
    """Pointwise residual block, channels-last (..., C): GELU(BN(Conv(GELU(BN(Conv(x))))) + x)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net1 = nn.Sequential(*conv_bn_act(channels, channels, nn.GELU))
        self.net2 = nn.Sequential(*conv_bn_act(channels, channels, None))
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.net2(self.net1(x)) + x)


class TokenPropagation(nn.Module):
    """Fuse an encoder skip with upsampled coarser tokens: (B, G, C_skip), (B, G, C_up) -> (B, G, C_out).

    Conv-BN-GELU from C_skip + C_up to C_out, then ``num_blocks`` :class:`ResidualConv` (official
    ``PointNetFeaturePropagation`` without its ``.net`` / ``.operation`` wrappers).
    """

    def __init__(self, *, in_channels: int, out_channels: int, num_blocks: int) -> None:
        super().__init__()
        self.fuse = nn.Sequential(*conv_bn_act(in_channels, out_channels, nn.GELU))
        self.extraction = nn.Sequential(*(ResidualConv(out_channels) for _ in range(num_blocks)))

    def forward(self, skip: Tensor, upsampled: Tensor) -> Tensor:
        return self.extraction(self.fuse(torch.cat([skip, upsampled], dim=-1)))  # (B, G, C_out)


def interpolate_tokens(query_xyz: Tensor, ref_xyz: Tensor, ref_tokens: Tensor) -> Tensor:
    """Inverse-squared-distance interpolation over the 3 nearest reference tokens (PointNet++ upsampling).

    Args:
        query_xyz: (B, G, 3) where to interpolate (the finer level's centres).
        ref_xyz: (B, S, 3) coarser centres.
        ref_tokens: (B, S, C) their tokens.

    Returns:
        (B, G, C); weights 1 / (d^2 + 1e-8), normalised, as the official code (d^2 is the squared distance).
    """
    k = min(INTERP_NEIGHBORS, ref_xyz.shape[1])
    idx = knn(query_xyz, ref_xyz, k)  # (B, G, k)
    sq_dist = (gather(ref_xyz, idx) - query_xyz.unsqueeze(2)).square().sum(-1)  # (B, G, k)
    weight = 1.0 / (sq_dist + INTERP_EPS)
    weight = weight / weight.sum(dim=-1, keepdim=True)  # (B, G, k)
    return (gather(ref_tokens, idx) * weight.unsqueeze(-1)).sum(dim=2)  # (B, G, C)


@dataclass
class Packed:
    """Visible tokens moved to the front of each row: ``index`` (B, L) into the G tokens, ``valid`` (B, L)."""

    index: Tensor
    valid: Tensor


def pack(select: Tensor, *, what: str = "token") -> Packed:
    """(B, G) bool, True = take -> :class:`Packed` with L = the largest selected count of the batch.

    A stable argsort keeps the selected tokens in their original order; shorter rows are padded with
    (invalid) unselected indices. Every row must select at least one ``what``.
    """
    counts = select.sum(dim=1)  # (B,)
    if int(counts.min()) == 0:
        raise ValueError(f"every sample needs at least one {what}, got none in sample {int(counts.argmin())}")
    length = int(counts.max())
    order = torch.argsort((~select).to(torch.uint8), dim=1, stable=True)[:, :length]  # (B, L)
    valid = torch.arange(length, device=select.device) < counts.unsqueeze(1)  # (B, L)
    return Packed(index=order, valid=valid)


def unpack(x: Tensor, packed: Packed, num_tokens: int) -> Tensor:
    """Scatter packed rows (B, L, C) back to (B, G, C); masked positions and padded rows become zeros."""
    batch, _, channels = x.shape
    out = x.new_zeros(batch, num_tokens, channels)
    index = packed.index.unsqueeze(-1).expand(-1, -1, channels)  # (B, L, C)
    return out.scatter(1, index, x * packed.valid.unsqueeze(-1))  # (B, G, C)


def attention_mask(valid: Tensor, centers: Tensor, radius: float) -> Tensor | None:
    """Key-padding (and optional local-radius) mask with SDPA polarity, True = may attend.

    Args:
        valid: (B, L) real (True) vs padded tokens.
        centers: (B, L, 3) token centres.
        radius: local attention radius; pairs at distance >= radius are masked (official); 0 disables.

    Returns:
        None when nothing is masked, else bool (B, 1, L or 1, L). Padded query rows and every real token's own
        key stay allowed, so no row is fully masked.
    """
    use_radius = radius > 0
    if not use_radius and bool(valid.all()):
        return None
    allowed = valid.unsqueeze(1)  # (B, 1, L) keys
    if use_radius:
        near = torch.cdist(centers, centers) < radius  # (B, L, L)
        allowed = allowed & (near | ~valid.unsqueeze(2))  # (B, L, L)
    return allowed.unsqueeze(1)  # (B, 1, L or 1, L)


class StateDictMismatchError(ValueError):
    """A state dict whose keys or shapes do not match the model; the message lists every offending key."""


def load_state_strict(module: nn.Module, state_dict: Mapping[str, Tensor], prefix: str = "") -> None:
    """``load_state_dict`` that raises one error naming every missing, unexpected or mis-shaped key."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{prefix}{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    problems = [
        f"{title} ({len(keys)}): {', '.join(keys)}"
        for title, keys in (
            ("missing keys", [prefix + k for k in missing]),
            ("unexpected keys", [prefix + k for k in unexpected]),
            ("shape mismatches", shapes),
        )
        if keys
    ]
    if problems:
        raise StateDictMismatchError("state dict does not match the model; " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True)
