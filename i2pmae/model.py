"""I2P-MAE: hierarchical point-cloud masked autoencoder with 2D-guided masking and 2D-semantic targets.

Architecture (DESIGN.md 1.6-1.8, official Point-M2AE / I2P-MAE layout and module names):

- ``h_encoder`` (:class:`HierarchicalEncoder`): level 0 embeds the xyz offsets of each neighbourhood with a
  mini-PointNet, levels >= 1 merge the previous level's tokens at their kNN; per level a positional MLP added
  before every pre-norm block, attention over the visible tokens only, one LayerNorm.
- decoder: stage 0 at the top level (visible tokens + ``mask_token``), then per finer level a 3-NN
  upsampling fused with the encoder skip (zeros where masked) by ``token_prop``; ``decoder_norm``.
- heads at the head level (level 1 in the paper): ``rec_head_3d`` predicts the neighbour level-0 centres of
  masked tokens (Chamfer-L2), ``rec_head_2d`` the teacher features of the neighbours of visible tokens in
  every view (MSE).

The frozen 2D teacher is never part of the model: callers pass :class:`~i2pmae.teachers.TeacherMaps`
computed on the canonical (un-augmented) points. Bool masks mean True = masked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from .config import MASKING_MODES, PAPER_POINT_EMBED_WIDTHS, I2PMAEConfig, get_config
from .geometry import Hierarchy, build_hierarchy, gather
from .layers import (
    POINT_CHANNELS,
    PointConv,
    TokenEmbed,
    TokenPropagation,
    TransformerStage,
    attention_mask,
    drop_path_rates,
    interpolate_tokens,
    load_state_strict,
    pack,
    positional_mlp,
    token_embed_widths,
    unpack,
)
from .losses import chamfer_l2, feature_loss
from .masking import guided_mask, propagate_mask, random_mask

if TYPE_CHECKING:
    from .teachers import TeacherMaps

__all__ = [
    "Analysis",
    "EncoderOutput",
    "HierarchicalEncoder",
    "I2PMAE",
    "PointClassifier",
    "PretrainOutput",
    "Reconstruction",
    "create_model",
    "pool_tokens",
]

POOLING_MODES = ("max", "meanmax")
INIT_STD = 0.02  # trunc-normal std of every Linear / Conv1d weight and the mask token (official)
HEAD_HIDDEN = 256  # classification head MLP width (official)
HEAD_DROPOUT = 0.5



def pool_tokens(tokens: Tensor, pool: str = "max") -> Tensor:
    """(B, G, C) -> (B, C): ``max`` (official SVM feature) or ``meanmax`` = mean + max (fine-tuning)."""
    if pool == "max":
        return tokens.amax(dim=1)
    if pool == "meanmax":
        return tokens.mean(dim=1) + tokens.amax(dim=1)
    raise ValueError(f"pool must be one of {POOLING_MODES}, got {pool!r}")


def _init_module(module: nn.Module) -> None:
    """The one init policy: trunc-normal(0.02) weights and zero biases for Linear/Conv1d, unit norms.

    The official encoder uses it; its decoder blocks use xavier-uniform and its other decoder layers PyTorch's
    defaults. One policy keeps init in one place; pre-training is not sensitive to this choice.
    """
    if isinstance(module, nn.Linear | nn.Conv1d):
        trunc_normal_(module.weight, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm | nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class HierarchicalEncoder(nn.Module):
    """Multi-level token encoder over a :class:`~i2pmae.geometry.Hierarchy` (official ``H_Encoder``).

    Level 0 embeds xyz offsets with a mini-PointNet of ``point_embed_widths``; level s >= 1 merges the level
    s-1 tokens at its kNN. Per level: positional MLP added before every block, ``depths[s]`` blocks over the
    visible tokens, one LayerNorm. ``drop_path`` is the last rate of a linspace over all blocks.
    """

    def __init__(
        self,
        *,
        dims: Sequence[int],
        depths: Sequence[int],
        heads: Sequence[int],
        point_embed_widths: Sequence[int] = PAPER_POINT_EMBED_WIDTHS,
        drop_path: float = 0.0,
        local_radius: Sequence[float],
    ) -> None:
        super().__init__()
        in_dims = (POINT_CHANNELS, *dims[:-1])
        self.local_radius = tuple(local_radius)
        self.token_embed = nn.ModuleList(
            TokenEmbed(
                in_channels=c_in, out_channels=c, widths=token_embed_widths(s, c_in, c, point_embed_widths)
            )
            for s, (c_in, c) in enumerate(zip(in_dims, dims, strict=True))
        )
        self.encoder_pos_embeds = nn.ModuleList(positional_mlp(c) for c in dims)
        rates = drop_path_rates(drop_path, depths)
        self.encoder_blocks = nn.ModuleList(
            TransformerStage(dim=c, depth=depth, num_heads=num_heads, drop_path=rate)
            for c, depth, num_heads, rate in zip(dims, depths, heads, rates, strict=True)
        )
        self.encoder_norms = nn.ModuleList(nn.LayerNorm(c) for c in dims)

    def forward(
        self, points: Tensor, hierarchy: Hierarchy, masks: list[Tensor] | None = None
    ) -> list[Tensor]:
        """Encode every level.

        Args:
            points: (B, N, 3) the cloud the hierarchy was built on.
            hierarchy: centres and neighbourhoods per level.
            masks: per level (B, G_s) bool, True = masked; None = every token visible.

        Returns:
            Per level (B, G_s, C_s), layer-normed, zeros at masked tokens.
        """
        groups = gather(points, hierarchy.neighbor_idx[0])  # (B, G_0, K_0, 3)
        groups = groups - hierarchy.centers[0].unsqueeze(2)
        outputs = []
        for level, centers in enumerate(hierarchy.centers):
            tokens = self.token_embed[level](groups)  # (B, G_s, C_s)
            mask = masks[level] if masks is not None else tokens.new_zeros(tokens.shape[:2], dtype=torch.bool)
            merged, normed = self._encode_level(level, tokens, centers, mask)
            outputs.append(normed)
            if level + 1 < len(hierarchy.centers):
                groups = gather(merged, hierarchy.neighbor_idx[level + 1])  # (B, G_{s+1}, K_{s+1}, C_s)
        return outputs

    def _encode_level(
        self, level: int, tokens: Tensor, centers: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Transformer over the visible tokens of one level: (B, G, C) tokens, (B, G, 3), (B, G) mask.

        Returns the input of the next level's merge (B, G, C) (block outputs at visible tokens, the embeddings
        elsewhere, as the official code) and the normed output (B, G, C), zeros at masked tokens.
        """
        packed = pack(~mask, what="visible token")
        x = gather(tokens, packed.index)  # (B, L, C)
        xyz = gather(centers, packed.index)  # (B, L, 3)
        attn_mask = attention_mask(packed.valid, xyz, self.local_radius[level])
        x = self.encoder_blocks[level](x, self.encoder_pos_embeds[level](xyz), attn_mask)  # (B, L, C)
        num_tokens = tokens.shape[1]
        merged = torch.where(mask.unsqueeze(-1), tokens, unpack(x, packed, num_tokens))  # (B, G, C)
        return merged, unpack(self.encoder_norms[level](x), packed, num_tokens)


def _build_encoder(cfg: I2PMAEConfig, local_radius: tuple[float, ...]) -> HierarchicalEncoder:
    return HierarchicalEncoder(
        dims=cfg.encoder_dims,
        depths=cfg.encoder_depths,
        heads=cfg.encoder_heads,
        point_embed_widths=cfg.point_embed_widths,
        drop_path=cfg.drop_path,
        local_radius=local_radius,
    )


class _EncoderFeatures:
    """Unmasked feature extraction shared by :class:`I2PMAE` and :class:`PointClassifier`."""

    cfg: I2PMAEConfig
    h_encoder: HierarchicalEncoder

    def build_hierarchy(self, points: Tensor) -> Hierarchy:
        """(B, N, 3) -> the config's FPS + kNN token hierarchy."""
        _check_points(points, self.cfg)
        return build_hierarchy(points, self.cfg.num_centers, self.cfg.group_sizes)

    def forward_features(self, points: Tensor, *, hierarchy: Hierarchy | None = None) -> list[Tensor]:
        """All tokens, no masking: (B, N, 3) -> per level (B, G_s, C_s), layer-normed."""
        return self.h_encoder(points, self._hierarchy(points, hierarchy))

    def _hierarchy(self, points: Tensor, hierarchy: Hierarchy | None) -> Hierarchy:
        """The given hierarchy after a shape check, or a new one built on ``points``."""
        if hierarchy is None:
            return self.build_hierarchy(points)
        _check_points(points, self.cfg)
        shapes = [tuple(idx.shape) for idx in hierarchy.neighbor_idx]
        expected = [
            (points.shape[0], g, k) for g, k in zip(self.cfg.num_centers, self.cfg.group_sizes, strict=True)
        ]
        if shapes != expected:
            raise ValueError(
                f"hierarchy neighbourhoods {shapes} do not fit this config and batch: {expected}"
            )
        return hierarchy

    def extract_features(self, points: Tensor, pool: str = "max") -> Tensor:
        """(B, N, 3) -> (B, C_top): pooled top-level tokens, ``max`` (official SVM feature) or ``meanmax``."""
        return pool_tokens(self.forward_features(points)[-1], pool)


def _check_points(points: Tensor, cfg: I2PMAEConfig) -> None:
    if not isinstance(points, Tensor) or points.ndim != 3 or points.shape[-1] != 3:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"points must be a (B, N, 3) tensor, got {shape}")
    if not points.is_floating_point():
        raise TypeError(f"points must be floating point, got {points.dtype}")
    needed = max(cfg.num_centers[0], cfg.group_sizes[0])
    if points.shape[1] < needed:
        raise ValueError(f"need at least {needed} points per cloud for this config, got {points.shape[1]}")


@dataclass
class Analysis:
    """The mask-independent part of a forward pass (:meth:`I2PMAE.analyse`): tokens and their 2D saliency.

    Computed once per batch (per shape in the explorer); masks for any ratio, temperature and seed are drawn
    from it by :meth:`I2PMAE.draw_masks`.
    """

    points: Tensor  # (B, N, 3) the cloud the 3D network sees (possibly augmented)
    canonical_points: Tensor  # (B, N, 3) the same points before augmentation, where the teacher maps are read
    hierarchy: Hierarchy  # FPS + kNN tokens of ``points``
    teacher_maps: TeacherMaps | None
    token_saliency: list[Tensor] | None  # per level (B, G_s): saliency at the centres, mean over the views

    def expand(self, batch: int) -> Analysis:
        """A batch-of-one analysis repeated ``batch`` times (views, not copies), e.g. to reconstruct one shape
        under several masks in one pass. The teacher maps are dropped: only the loss reads them."""
        if self.points.shape[0] != 1:
            raise ValueError(f"only a batch-of-one analysis can be expanded, got {self.points.shape[0]}")

        def rows(tensors: list[Tensor]) -> list[Tensor]:
            return [t.expand(batch, *t.shape[1:]) for t in tensors]

        tokens = self.hierarchy
        return Analysis(
            points=self.points.expand(batch, -1, -1),  # (batch, N, 3)
            canonical_points=self.canonical_points.expand(batch, -1, -1),
            hierarchy=Hierarchy(rows(tokens.centers), rows(tokens.center_idx), rows(tokens.neighbor_idx)),
            teacher_maps=None,
            token_saliency=None if self.token_saliency is None else rows(self.token_saliency),
        )


@dataclass
class EncoderOutput:
    """What :meth:`I2PMAE.forward_encoder` hands to the decoder and the loss."""

    analysis: Analysis
    masks: list[Tensor]  # per level (B, G_s) bool, True = masked
    tokens: list[Tensor]  # per level (B, G_s, C_s), zeros where masked


@dataclass
class PretrainOutput:
    """Losses and the tensors behind them. Head-level tokens of the whole batch are flattened."""

    loss: Tensor  # w3d * loss_3d + w2d * loss_2d
    loss_3d: Tensor  # Chamfer-L2 of masked tokens
    loss_2d: Tensor  # MSE of visible tokens' teacher features; 0 when the 2D target is off
    masks: list[Tensor]  # per level (B, G_s), True = masked
    pred_3d: Tensor  # (M, P, 3) relative to the token centres
    target_3d: Tensor  # (M, K_h, 3)
    pred_2d: Tensor | None  # (V_h, K_h, V, C)
    target_2d: Tensor | None  # (V_h, K_h, V, C)
    token_saliency: Tensor | None  # (B, G_top)

    def loss_terms(self) -> dict[str, float]:
        """Scalar losses for logging."""
        return {name: float(getattr(self, name).detach()) for name in ("loss", "loss_3d", "loss_2d")}


@dataclass
class Reconstruction:
    """What the explorer shows. Rows are padded to the batch's largest count; ``*_valid`` marks real rows."""

    centers: list[Tensor]  # per level (B, G_s, 3)
    masks: list[Tensor]  # per level (B, G_s), True = masked
    token_saliency: Tensor | None  # (B, G_top)
    head_level: int  # level of the reconstructed tokens (1 in the paper)
    masked_index: Tensor  # (B, M) index of each masked head-level token
    masked_valid: Tensor  # (B, M)
    pred_points: Tensor  # (B, M, P, 3) predicted neighbours, absolute coordinates
    target_points: Tensor  # (B, M, K_h, 3) true neighbour centres, absolute coordinates
    visible_points: Tensor  # (B, V_0, K_0, 3) input points of the visible level-0 groups
    visible_valid: Tensor  # (B, V_0)
    chamfer: Tensor  # (B,) Chamfer-L2 per shape, averaged over its masked tokens


class I2PMAE(_EncoderFeatures, nn.Module):
    """The pre-training model (3D network only; the teacher stays outside).

    One path for training, the explorer, the CLI and the app::

        analysis = model.analyse(points, teacher_maps)      # tokens + token saliency, once per batch
        masks = model.draw_masks(analysis, generator=g)      # random or 2D-guided, any ratio / tau
        enc = model.forward_encoder(analysis, masks)
        out = model.forward_loss(enc, model.forward_decoder(enc))

    ``forward`` chains these and always returns a :class:`PretrainOutput`; :meth:`reconstruct` places the
    predictions in the cloud for display. Mask ratio, temperature and mode default to the config.
    :meth:`forward_features` never masks.
    """

    def __init__(self, cfg: I2PMAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.h_encoder = _build_encoder(cfg, cfg.local_radius)
        top, dec = cfg.num_levels - 1, cfg.decoder_dims
        self.mask_token = nn.Parameter(torch.zeros(1, dec[0]))
        rates = drop_path_rates(cfg.drop_path, cfg.decoder_depths)
        self.h_decoder = nn.ModuleList(
            TransformerStage(dim=c, depth=depth, num_heads=heads, drop_path=rate)
            for c, depth, heads, rate in zip(dec, cfg.decoder_depths, cfg.decoder_heads, rates, strict=True)
        )
        self.decoder_pos_embeds = nn.ModuleList(positional_mlp(c) for c in dec)
        self.token_prop = nn.ModuleList(  # stage i >= 1 fuses the level (top - i) encoder skip
            TokenPropagation(
                in_channels=cfg.encoder_dims[top - i] + dec[i - 1],
                out_channels=dec[i],
                num_blocks=cfg.decoder_up_blocks,
            )
            for i in range(1, len(dec))
        )
        self.decoder_norm = nn.LayerNorm(dec[-1])
        self.rec_head_3d = PointConv(dec[-1], 3 * cfg.pred_points)
        num_targets_2d = cfg.group_sizes[cfg.head_level] * cfg.num_views * cfg.teacher_dim
        self.rec_head_2d = PointConv(dec[-1], num_targets_2d) if cfg.target_2d else None
        self.init_weights()
        # The finer levels' LayerNorms feed only forward_features, no pre-training loss: frozen, so optimisers
        # and DDP see only parameters the loss trains (they stay at their init, as in the official code).
        for level in range(cfg.head_level):
            self.h_encoder.encoder_norms[level].requires_grad_(False)

    def init_weights(self) -> None:
        """See :func:`_init_module`; the mask token is trunc-normal(0.02) like the official one."""
        self.apply(_init_module)
        trunc_normal_(self.mask_token, std=INIT_STD)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that are neither biases nor 1-D but must not decay."""
        return {"mask_token"}

    def forward(
        self,
        points: Tensor,
        teacher_maps: TeacherMaps | None = None,
        *,
        canonical_points: Tensor | None = None,
        top_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PretrainOutput:
        """One pre-training step's losses.

        Args:
            points: (B, N, 3) the (possibly augmented) cloud the 3D network sees.
            teacher_maps: teacher outputs on ``canonical_points``; needed by guided masking and the 2D target.
            canonical_points: (B, N, 3) the same points before augmentation (same order); default ``points``.
            top_mask: (B, G_top) bool, True = masked, to impose a mask instead of drawing one.
            generator: seeds the mask draw (any device; the mask is moved to the points' device).
        """
        analysis = self.analyse(points, teacher_maps, canonical_points=canonical_points)
        masks = self.draw_masks(analysis, generator=generator) if top_mask is None else propagate_mask(
            top_mask.to(points.device), analysis.hierarchy
        )
        enc = self.forward_encoder(analysis, masks)
        return self.forward_loss(enc, self.forward_decoder(enc))

    def analyse(
        self,
        points: Tensor,
        teacher_maps: TeacherMaps | None = None,
        *,
        canonical_points: Tensor | None = None,
        hierarchy: Hierarchy | None = None,
    ) -> Analysis:
        """Tokenise the cloud and read the teacher's saliency at every level's centres (DESIGN.md 1.1, 1.4).

        Args:
            points: (B, N, 3) the cloud the 3D network sees; at least ``num_centers[0]`` points (often
                ``cfg.num_points``, but any N works: the explorer passes the user's choice).
            teacher_maps: teacher outputs on ``canonical_points`` (B clouds); None = no saliency.
            canonical_points: (B, N, 3) where the maps are read (the un-augmented points); default ``points``.
            hierarchy: the tokenisation of ``points`` if the caller already built it.
        """
        hierarchy = self._hierarchy(points, hierarchy)
        canonical = points if canonical_points is None else canonical_points
        if canonical.shape != points.shape:
            raise ValueError(
                f"canonical_points {tuple(canonical.shape)} must match points {tuple(points.shape)}"
            )
        saliency = None
        if teacher_maps is not None:
            self._check_teacher_views(teacher_maps, points.shape[0])
            saliency = [
                teacher_maps.sample_saliency(gather(canonical, hierarchy.point_idx(level))).mean(dim=-1)
                for level in range(self.cfg.num_levels)
            ]  # per level (B, G_s)
        return Analysis(
            points=points,
            canonical_points=canonical,
            hierarchy=hierarchy,
            teacher_maps=teacher_maps,
            token_saliency=saliency,
        )

    def draw_masks(
        self,
        analysis: Analysis,
        *,
        mask_ratio: float | None = None,
        temperature: float | None = None,
        mode: str | None = None,
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Draw the top-level mask and propagate it down (DESIGN.md 1.5): per level (B, G_s), True = masked.

        Args:
            analysis: from :meth:`analyse`; guided masking needs its token saliency (teacher maps).
            mask_ratio, temperature, mode: default to the config's ``mask_ratio``, ``temperature`` (tau in
                softmax(saliency / tau); ``math.inf`` = uniform) and ``masking`` ("guided" or "random").
            generator: seeds the draw; the mask is drawn on its device and moved to the points' device.
                The same generator state gives the same random order to both modes, so guided at tau = inf
                equals random.
        """
        cfg = self.cfg
        mask_ratio = cfg.mask_ratio if mask_ratio is None else mask_ratio
        temperature = cfg.temperature if temperature is None else temperature
        mode = cfg.masking if mode is None else mode
        hierarchy = analysis.hierarchy
        device = generator.device if generator is not None else hierarchy.centers[-1].device
        if mode == "random":
            batch = hierarchy.centers[-1].shape[0]
            top = random_mask(batch, cfg.num_centers[-1], mask_ratio, generator=generator, device=device)
        elif mode == "guided":
            if analysis.token_saliency is None:
                raise ValueError(
                    "guided masking needs teacher_maps (or pass top_mask, or use masking='random')"
                )
            saliency = analysis.token_saliency[-1].to(device)  # (B, G_top)
            top = guided_mask(saliency, mask_ratio, temperature=temperature, generator=generator)
        else:
            raise ValueError(f"mode must be one of {MASKING_MODES}, got {mode!r}")
        return propagate_mask(top.to(analysis.points.device), hierarchy)

    def forward_encoder(self, analysis: Analysis, masks: list[Tensor]) -> EncoderOutput:
        """Encode the visible tokens of every level: masks per level (B, G_s), True = masked."""
        tokens = self.h_encoder(analysis.points, analysis.hierarchy, masks)
        return EncoderOutput(analysis=analysis, masks=masks, tokens=tokens)

    def forward_decoder(self, enc: EncoderOutput) -> Tensor:
        """Encoder output -> decoded, layer-normed head-level tokens (B, G_h, C_dec)."""
        centers, top = enc.analysis.hierarchy.centers, self.cfg.num_levels - 1
        mask_token = self.mask_token.to(enc.tokens[top].dtype)
        x = torch.where(enc.masks[top].unsqueeze(-1), mask_token, enc.tokens[top])  # (B, G_top, C)
        x = self.h_decoder[0](x, self.decoder_pos_embeds[0](centers[top]))
        for stage in range(1, len(self.h_decoder)):
            level = top - stage
            upsampled = interpolate_tokens(centers[level], centers[level + 1], x)  # (B, G_s, C_prev)
            x = self.token_prop[stage - 1](enc.tokens[level], upsampled)  # (B, G_s, C_stage)
            x = self.h_decoder[stage](x, self.decoder_pos_embeds[stage](centers[level]))
        return self.decoder_norm(x)

    def forward_loss(self, enc: EncoderOutput, decoded: Tensor) -> PretrainOutput:
        """Chamfer-L2 on masked head-level tokens (+ teacher-feature MSE on visible ones)."""
        level, analysis = self.cfg.head_level, enc.analysis
        mask = enc.masks[level]  # (B, G_h)
        if not bool(mask.any()):
            raise ValueError(f"no masked token at level {level}: nothing to reconstruct")
        pred_3d = self._predict_3d(decoded[mask])  # (M, P, 3)
        target_3d = self._neighbor_offsets(analysis.hierarchy, level)[mask]  # (M, K_h, 3)
        loss_3d = chamfer_l2(pred_3d, target_3d)
        pred_2d = target_2d = None
        loss_2d = loss_3d.new_zeros(())
        if self.rec_head_2d is not None:
            if analysis.teacher_maps is None:
                raise ValueError("the 2D target is on (target_2d=True) but no teacher_maps were given")
            self._check_teacher_features(analysis.teacher_maps)
            visible = ~mask
            pred_2d = self._predict_2d(decoded[visible])  # (V_h, K_h, V, C)
            target_2d = self._teacher_targets(analysis, level, visible)  # (V_h, K_h, V, C)
            loss_2d = feature_loss(pred_2d, target_2d)
        loss = self.cfg.loss_weight_3d * loss_3d + self.cfg.loss_weight_2d * loss_2d
        return PretrainOutput(
            loss=loss,
            loss_3d=loss_3d,
            loss_2d=loss_2d,
            masks=enc.masks,
            pred_3d=pred_3d,
            target_3d=target_3d,
            pred_2d=pred_2d,
            target_2d=target_2d,
            token_saliency=None if analysis.token_saliency is None else analysis.token_saliency[-1],
        )

    @torch.no_grad()
    def reconstruct(self, analysis: Analysis, masks: list[Tensor]) -> Reconstruction:
        """Encode, decode and place the predicted neighbours of masked head-level tokens in the cloud.

        Args:
            analysis: from :meth:`analyse` (canonical points: teacher maps, if any, were computed on them).
            masks: per level (B, G_s), True = masked, e.g. from :meth:`draw_masks`.
        """
        enc = self.forward_encoder(analysis, masks)
        decoded = self.forward_decoder(enc)
        hierarchy, level, points = analysis.hierarchy, self.cfg.head_level, analysis.points
        masked = pack(enc.masks[level], what=f"masked level-{level} token")
        batch, num_masked = masked.index.shape
        centers = gather(hierarchy.centers[level], masked.index).unsqueeze(2)  # (B, M, 1, 3)
        pred = self._predict_3d(gather(decoded, masked.index).flatten(0, 1))  # (B M, P, 3)
        pred = pred.unflatten(0, (batch, num_masked)) + centers  # (B, M, P, 3)
        target = gather(self._neighbor_offsets(hierarchy, level), masked.index) + centers  # (B, M, K_h, 3)
        per_token = chamfer_l2(pred, target, reduction="none")  # (B, M)
        chamfer = (per_token * masked.valid).sum(1) / masked.valid.sum(1)  # (B,)
        visible = pack(~enc.masks[0], what="visible level-0 token")
        groups = gather(points, hierarchy.neighbor_idx[0])  # (B, G_0, K_0, 3)
        return Reconstruction(
            centers=hierarchy.centers,
            masks=enc.masks,
            token_saliency=None if analysis.token_saliency is None else analysis.token_saliency[-1],
            head_level=level,
            masked_index=masked.index,
            masked_valid=masked.valid,
            pred_points=pred,
            target_points=target,
            visible_points=gather(groups, visible.index),
            visible_valid=visible.valid,
            chamfer=chamfer,
        )

    def _predict_3d(self, tokens: Tensor) -> Tensor:
        """(T, C_dec) -> (T, P, 3) predicted neighbour offsets."""
        return self.rec_head_3d(tokens).reshape(tokens.shape[0], self.cfg.pred_points, 3)

    def _predict_2d(self, tokens: Tensor) -> Tensor:
        """(T, C_dec) -> (T, K_h, V, C) predicted teacher features (official channel order K, V, C)."""
        cfg = self.cfg
        out = self.rec_head_2d(tokens)  # (T, K_h V C)
        return out.reshape(tokens.shape[0], cfg.group_sizes[cfg.head_level], cfg.num_views, cfg.teacher_dim)

    @staticmethod
    def _neighbor_offsets(hierarchy: Hierarchy, level: int) -> Tensor:
        """(B, G_s, K_s, 3): the level s-1 centres in each level-s neighbourhood, relative to its centre."""
        neighbors = gather(hierarchy.centers[level - 1], hierarchy.neighbor_idx[level])  # (B, G_s, K_s, 3)
        return neighbors - hierarchy.centers[level].unsqueeze(2)

    @staticmethod
    def _teacher_targets(analysis: Analysis, level: int, select: Tensor) -> Tensor:
        """(T, K_s, V, C): teacher features at the canonical level s-1 centres of the neighbourhoods of the T
        level-s tokens selected by ``select`` (B, G_s) bool, in row-major order (as ``x[select]``).

        Only the selected neighbourhoods are gathered (the same values as gathering all and then selecting,
        without the (B, G_s, K_s, V, C) intermediate).
        """
        hierarchy = analysis.hierarchy
        lower = gather(analysis.canonical_points, hierarchy.point_idx(level - 1))  # (B, G_{s-1}, 3)
        features = analysis.teacher_maps.sample(lower)[0]  # (B, G_{s-1}, V, C)
        batch, num_lower = features.shape[:2]
        offsets = torch.arange(batch, device=features.device).view(batch, 1, 1) * num_lower  # (B, 1, 1)
        rows = (hierarchy.neighbor_idx[level] + offsets)[select]  # (T, K_s) into the flat B G_{s-1} rows
        return features.flatten(0, 1)[rows]  # (T, K_s, V, C)

    def _check_teacher_views(self, teacher_maps: TeacherMaps, batch: int) -> None:
        expected = (batch, self.cfg.num_views)
        shape = tuple(teacher_maps.saliency.shape)
        if len(shape) != 4 or shape[:2] != expected:
            raise ValueError(f"teacher_maps.saliency must be (B, V, h, w), (B, V) = {expected}, got {shape}")

    def _check_teacher_features(self, teacher_maps: TeacherMaps) -> None:
        cfg, features = self.cfg, teacher_maps.features
        expected = (teacher_maps.saliency.shape[0], cfg.num_views, cfg.teacher_dim)
        if features.ndim != 5 or tuple(features.shape[:3]) != expected:
            raise ValueError(
                f"teacher_maps.features must be (B, V, C, h, w) with (B, V, C) = {expected} "
                f"(teacher {cfg.teacher!r}), got {tuple(features.shape)}"
            )


class PointClassifier(_EncoderFeatures, nn.Module):
    """Fine-tuning model: the hierarchical encoder with local attention, mean+max pooling and an MLP head."""

    def __init__(self, cfg: I2PMAEConfig, num_classes: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.cfg, self.num_classes = cfg, num_classes
        self.h_encoder = _build_encoder(cfg, cfg.classifier_local_radius)
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(cfg.encoder_dims[-1], HEAD_HIDDEN),
            nn.BatchNorm1d(HEAD_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Dropout(HEAD_DROPOUT),
            nn.Linear(HEAD_HIDDEN, HEAD_HIDDEN),
            nn.BatchNorm1d(HEAD_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Dropout(HEAD_DROPOUT),
            nn.Linear(HEAD_HIDDEN, num_classes),
        )
        self.init_weights()

    def init_weights(self) -> None:
        """See :func:`_init_module`."""
        self.apply(_init_module)

    def no_weight_decay(self) -> set[str]:
        return set()

    def forward(self, points: Tensor, *, hierarchy: Hierarchy | None = None) -> Tensor:
        """(B, N, 3) -> class logits (B, num_classes). Training mode needs B >= 2 (BatchNorm in the head)."""
        tokens = self.forward_features(points, hierarchy=hierarchy)[-1]  # (B, G_top, C)
        return self.cls_head_finetune(pool_tokens(tokens, "meanmax"))

    def load_encoder_state(self, state_dict: Mapping[str, Tensor], *, fresh_final_norm: bool = False) -> None:
        """Load ``h_encoder.*`` from a pre-training state dict (other keys ignored); strict on the encoder.

        ``fresh_final_norm`` keeps this model's initial top-level LayerNorm instead of the pre-trained one,
        as the official fine-tuning does (its classifier builds a new norm after the encoder).
        """
        prefix = "h_encoder."
        encoder_state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if fresh_final_norm:
            final = f"encoder_norms.{self.cfg.num_levels - 1}."
            own = self.h_encoder.state_dict()
            encoder_state.update({k: v for k, v in own.items() if k.startswith(final)})
        load_state_strict(self.h_encoder, encoder_state, prefix)


def create_model(variant: str, **overrides: Any) -> I2PMAE:
    """A freshly initialised :class:`I2PMAE` of a registered variant (``paper``, ``tiny``), like timm's
    ``create_model``: ``overrides`` edit the variant's config (e.g. ``masking="random"``)."""
    return I2PMAE(get_config(variant, **overrides))
