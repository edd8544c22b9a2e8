"""2D teachers: real shipped weights, frozen behaviour, CLIP's code path on random weights, offline loading,
and the teacher maps read back at 3D points."""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from i2pmae.io import load_points
from i2pmae.projection import IMAGENET_MEAN, IMAGENET_STD, pixel_coords, project
from i2pmae.teachers import (
    FEATURE_GRID,
    ClipViTB16Teacher,
    EfficientNetLite0Teacher,
    Teacher,
    TeacherMaps,
    available_teachers,
    compute_teacher_maps,
    load_teacher,
)

S = 224
CLOTHING = {"military uniform", "suit", "bow tie", "Windsor tie", "academic gown", "mortarboard", "vestment"}


@pytest.fixture(scope="module")
def lite() -> EfficientNetLite0Teacher:
    return load_teacher()


@pytest.fixture(scope="module")
def clip_model() -> nn.Module:
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """Grace Hopper (shipped with matplotlib), resized and centre-cropped like ImageNet evaluation."""
    cbook = pytest.importorskip("matplotlib.cbook")
    transforms = pytest.importorskip("torchvision.transforms")
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        image = Image.open(file).convert("RGB")
    to_tensor = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(S), transforms.ToTensor()])
    return to_tensor(image)[None]  # (1, 3, 224, 224) in [0, 1]


def _imagenet(images01: torch.Tensor) -> torch.Tensor:
    return (images01 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def test_shipped_weights_classify_a_photo(lite: EfficientNetLite0Teacher, photo: torch.Tensor):
    torchvision = pytest.importorskip("torchvision")
    categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    probs = lite.logits(_imagenet(photo)).softmax(-1)[0]
    top5 = [categories[i] for i in probs.topk(5).indices]
    # Measured: academic gown, mortarboard, military uniform, vestment, Windsor tie.
    assert "military uniform" in top5, top5
    assert len(CLOTHING.intersection(top5)) >= 4, top5
    assert probs.max() > 0.15


def test_input_conversion_matches_the_stem_batchnorm_statistics(lite: EfficientNetLite0Teacher, photo):
    # Crops of a natural photo through the teacher's conversion reproduce the stem BN running variance;
    # ImageNet-normalised input fed directly would be ~5x too wide.
    crops = F.interpolate(photo, scale_factor=2.0, mode="bilinear").unfold(2, S, 96).unfold(3, S, 96)
    crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, S, S)  # (n, 3, 224, 224)
    stem, bn = lite.net._conv_stem, lite.net._bn0
    converted = torch.addcmul(lite.input_shift, _imagenet(crops), lite.input_scale)
    for images, low, high in ((converted, 0.5, 2.0), (_imagenet(crops), 3.0, math.inf)):
        ratio = (stem(images).var(dim=(0, 2, 3)) / bn.running_var).median()
        assert low < ratio < high, ratio


def test_lite_outputs_match_the_package_network(lite: EfficientNetLite0Teacher):
    images = torch.randn(1, 3, S, S)
    features, saliency = lite(images)
    assert lite.dim == 112 and features.shape == (1, 112, FEATURE_GRID, FEATURE_GRID)
    captured = {}
    stage_end = lite.net._blocks[lite.split - 1]
    handle = stage_end.register_forward_hook(lambda module, args, out: captured.setdefault("x", out))
    try:
        converted = torch.addcmul(lite.input_shift, images, lite.input_scale)
        head = lite.net.extract_features(converted)  # (1, 1280, 7, 7)
    finally:
        handle.remove()
    assert torch.allclose(features, captured["x"], atol=1e-5)
    energy = F.interpolate(head.square().mean(1, keepdim=True), size=FEATURE_GRID, mode="bilinear")[:, 0]
    assert torch.allclose(saliency, energy / energy.sum(dim=(1, 2), keepdim=True), atol=1e-7)


def test_saliency_is_a_distribution_and_deterministic(lite: EfficientNetLite0Teacher):
    images = torch.randn(1, 3, S, S)
    features, saliency = lite(images)
    assert saliency.shape == (1, FEATURE_GRID, FEATURE_GRID) and bool((saliency >= 0).all())
    assert torch.allclose(saliency.sum(dim=(1, 2)), torch.ones(1))
    assert features.is_contiguous() and torch.equal(features, lite.features(images))
    assert torch.equal(saliency, lite.saliency(images))


def test_airplane_saliency_is_object_centred(lite: EfficientNetLite0Teacher, assets_dir: str):
    points = torch.from_numpy(load_points(os.path.join(assets_dir, "airplane.ply"), 2048, seed=0))[None]
    maps = compute_teacher_maps(lite, points)
    saliency = maps.saliency[0]  # (V, 14, 14)
    uniform = 1 / FEATURE_GRID**2
    entropy = -(saliency * saliency.log()).sum(dim=(1, 2)) / math.log(FEATURE_GRID**2)
    assert bool((saliency.amax(dim=(1, 2)) > 3 * uniform).all()), saliency.amax(dim=(1, 2)) / uniform
    assert bool((entropy < 0.96).all()), entropy
    occupied = F.adaptive_max_pool2d((maps.views.depth[0] != 0).float(), FEATURE_GRID) > 0  # (V, 14, 14)
    on_object = (saliency * occupied).sum(dim=(1, 2))
    assert bool((on_object > 1.25 * occupied.float().mean(dim=(1, 2))).all()), on_object


def test_teachers_are_frozen_and_stay_in_eval_mode(lite: EfficientNetLite0Teacher):
    holder = nn.Sequential(nn.Linear(2, 2))
    holder.add_module("teacher", lite)
    holder.train()
    lite.train(True)
    assert not any(m.training for m in lite.modules())
    assert not any(p.requires_grad for p in lite.parameters())
    running = lite.net._bn0.running_mean.clone()
    lite(torch.randn(1, 3, S, S))
    assert torch.equal(running, lite.net._bn0.running_mean)
    assert holder[0].training


def test_clip_features_and_saliency_match_a_manual_forward(clip_model: nn.Module):
    visual = clip_model.visual
    teacher = ClipViTB16Teacher(visual)
    image = torch.randn(1, 3, S, S)
    features, saliency = teacher(image)
    assert teacher.dim == 512 and features.shape == (1, 512, FEATURE_GRID, FEATURE_GRID)

    with torch.no_grad():
        patches = visual.conv1(image).flatten(2).transpose(1, 2)  # (1, 196, 768)
        x = torch.cat([visual.class_embedding.view(1, 1, -1), patches], 1) + visual.positional_embedding
        x = visual.ln_pre(x)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last = visual.transformer.resblocks[-1]
        attn = last.attn
        heads, width = attn.num_heads, x.shape[-1]
        q, k, _ = F.linear(last.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
        q = q.view(1, -1, heads, width // heads).transpose(1, 2)  # (1, heads, 197, 64)
        k = k.view(1, -1, heads, width // heads).transpose(1, 2)
        weights = (q @ k.transpose(-1, -2) / math.sqrt(width // heads)).softmax(-1).mean(1)  # (1, 197, 197)
        cls_to_patches = weights[0, 0, 1:] / weights[0, 0, 1:].sum()
        tokens = visual.ln_post(last(x)) @ visual.proj  # (1, 197, 512)

    expected = tokens[0, 1:].T.reshape(512, FEATURE_GRID, FEATURE_GRID)
    assert torch.allclose(features[0], expected, atol=1e-4)
    assert torch.allclose(saliency[0].flatten(), cls_to_patches, atol=1e-6)
    assert torch.allclose(saliency.sum(), torch.tensor(1.0))


def test_clip_loads_from_the_hugging_face_cache_only(clip_model, tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    from safetensors.torch import save_file

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))
    reason = available_teachers()["clip-vit-b16"]
    assert str(tmp_path / "hub") in reason and ".cache/clip/ViT-B-16.pt" in reason
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        load_teacher("clip-vit-b16")

    # A cache laid out the way huggingface_hub writes it, holding half-precision weights as OpenAI ships them.
    repo = tmp_path / "hub" / "models--timm--vit_base_patch16_clip_224.openai"
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    state = {f"visual.{k}": v.half().contiguous() for k, v in clip_model.visual.state_dict().items()}
    save_file(state, snapshot / "open_clip_model.safetensors")
    assert available_teachers()["clip-vit-b16"] == ""
    loaded = load_teacher("clip-vit-b16")
    for key, value in loaded.visual.state_dict().items():
        assert torch.equal(value, state[f"visual.{key}"].float()), key
    assert type(loaded.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


class PoolTeacher(Teacher):
    """A cheap stand-in: 16 x 16 average pooling as features, their energy as saliency."""

    def __init__(self) -> None:
        super().__init__(name="pool", dim=3)
        self.gain = nn.Parameter(torch.ones(()))
        self.freeze()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = F.avg_pool2d(images, S // FEATURE_GRID) * self.gain  # (n, 3, 14, 14)
        energy = features.square().sum(1)  # (n, 14, 14)
        return features, energy / energy.sum(dim=(1, 2), keepdim=True)


def test_teacher_maps_chunk_the_images_and_read_bicubic_maps_at_point_pixels():
    teacher = PoolTeacher()
    points = torch.randn(2, 300, 3, requires_grad=True)
    maps = compute_teacher_maps(teacher, points, chunk_size=4)  # 6 images in chunks of 4 and 2
    assert isinstance(maps, TeacherMaps) and not maps.features.requires_grad
    assert maps.features.shape == (2, 3, 3, FEATURE_GRID, FEATURE_GRID)
    assert maps.saliency.shape == (2, 3, FEATURE_GRID, FEATURE_GRID)
    views = project(points.detach())
    assert torch.equal(maps.views.images, views.images)
    features, saliency = teacher(views.images.flatten(0, 1))  # all 6 at once
    assert torch.equal(maps.features.flatten(0, 1), features)
    assert torch.equal(maps.saliency.flatten(0, 1), saliency)

    query = points[:, :50].detach()
    features, saliency = maps.sample(query)
    assert features.shape == (2, 50, 3, 3) and saliency.shape == (2, 50, 3)
    pixels = pixel_coords(maps.views, query)  # (B, V, M, 2)
    up_sal = F.interpolate(maps.saliency.flatten(0, 1)[:, None], size=S, mode="bicubic").view(2, 3, S, S)
    up_feat = F.interpolate(maps.features.flatten(0, 1), size=S, mode="bicubic").view(2, 3, 3, S, S)
    for b in range(2):
        for v in range(3):
            rows, cols = pixels[b, v, :, 0], pixels[b, v, :, 1]
            assert torch.allclose(saliency[b, :, v], up_sal[b, v, rows, cols], atol=1e-7)
            assert torch.allclose(features[b, :, v], up_feat[b, v][:, rows, cols].T, atol=1e-6)


def test_a_custom_teacher_is_frozen_too():
    teacher = PoolTeacher().train()
    assert not teacher.training and not teacher.gain.requires_grad


def test_bad_names_paths_and_inputs_raise(lite: EfficientNetLite0Teacher, tmp_path):
    with pytest.raises(ValueError, match="unknown teacher 'resnet'"):
        load_teacher("resnet")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_teacher("efficientnet-lite0", weights_path=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"layer.weight": torch.zeros(2)}, wrong)
    with pytest.raises(ValueError, match="does not hold"):
        load_teacher("efficientnet-lite0", weights_path=wrong)
    with pytest.raises(ValueError, match="shape"):
        lite(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="chunk_size"):
        compute_teacher_maps(PoolTeacher(), torch.randn(1, 10, 3), chunk_size=0)
    assert available_teachers()["efficientnet-lite0"] == ""
