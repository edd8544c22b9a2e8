"""Checkpoints: safetensors round trip, strict loading, and the official I2P-MAE / Point-M2AE layout."""

import argparse
import dataclasses
import json
import os
import stat

import pytest
import torch
from helpers import SMALL_MODEL
from safetensors.torch import save_file

from i2pmae.checkpoints import (
    CheckpointError,
    checkpoint_info,
    convert_official_checkpoint,
    load_checkpoint,
    load_official_checkpoint,
    load_official_state_dict,
    load_pretrained_encoder,
    nonfinite_tensors,
    read_safetensors_header,
    save_checkpoint,
    save_safetensors_atomic,
)
from i2pmae.config import I2PMAEConfig
from i2pmae.layers import StateDictMismatchError
from i2pmae.masking import propagate_mask, random_mask
from i2pmae.model import I2PMAE, PointClassifier

SMALL = I2PMAEConfig(**{
    **SMALL_MODEL, "num_points": 128, "num_centers": (32, 16, 8), "point_embed_widths": (8, 8, 16),
    "encoder_dims": (8, 16, 32), "decoder_dims": (32, 16), "drop_path": 0.1, "masking": "random",
    "teacher_dim": 4,
})  # fmt: skip
# Names that the official code gives to a few of these weights (models/I2P_MAE.py, models/modules.py).
OFFICIAL_KEYS = (
    "h_encoder.token_embed.0.first_conv.0.weight",
    "h_encoder.token_embed.1.second_conv.3.bias",
    "h_encoder.encoder_pos_embeds.2.2.weight",
    "h_encoder.encoder_blocks.1.blocks.0.attn.qkv.weight",
    "h_encoder.encoder_norms.0.weight",
    "h_decoder.0.blocks.0.mlp.fc2.weight",
    "h_decoder.1.blocks.0.norm1.bias",
    "decoder_pos_embeds.1.0.weight",
    "token_prop.0.fuse.net.0.weight",
    "token_prop.0.fuse.net.1.running_var",
    "token_prop.0.extraction.operation.0.net1.0.weight",
    "token_prop.0.extraction.operation.0.net2.1.num_batches_tracked",
    "decoder_norm.weight",
    "mask_token",
    "rec_head_3d.weight",
    "rec_head_2d.bias",
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Give every tensor (BatchNorm statistics included) a distinctive value, then eval mode."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=g) + 0.5)
    return model.eval()


def _points(batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    points = torch.randn(batch, SMALL.num_points, 3, generator=g)
    return points / points.norm(dim=-1, keepdim=True)


def _outputs(model: I2PMAE, points: torch.Tensor) -> list[torch.Tensor]:
    top_mask = random_mask(
        points.shape[0], SMALL.num_centers[-1], 0.8, generator=torch.Generator().manual_seed(2)
    )
    analysis = model.analyse(points)
    rec = model.reconstruct(analysis, propagate_mask(top_mask, analysis.hierarchy))
    with torch.no_grad():
        return [rec.pred_points, rec.chamfer, *model.forward_features(points)]


def _to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names -> the official ones (the wrappers our token propagation drops)."""
    renamed = {}
    for key, value in state.items():
        key = key.replace(".fuse.", ".fuse.net.").replace(".extraction.", ".extraction.operation.")
        renamed[key] = value
    return renamed


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = _trained_looking(I2PMAE(SMALL))
    path = save_checkpoint(
        tmp_path / "run" / "model.safetensors", model, metadata={"epoch": 7, "teacher": "x"}
    )
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temporary file left
    loaded, metadata = load_checkpoint(path)
    assert metadata == {"epoch": 7, "teacher": "x"} and loaded.cfg == SMALL and not loaded.training
    for a, b in zip(_outputs(model, _points()), _outputs(loaded, _points()), strict=True):
        assert torch.equal(a, b)
    info = checkpoint_info(path)
    assert info["model_class"] == "I2PMAE" and info["num_tensors"] == len(model.state_dict())


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_write_gives_the_umask_mode_not_0600(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_safetensors_atomic(tmp_path / "t.safetensors", {"x": torch.zeros(2)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary file left


def test_classifier_round_trip_keeps_class_count(tmp_path):
    model = _trained_looking(PointClassifier(SMALL, num_classes=4))
    path = save_checkpoint(tmp_path / "cls.safetensors", model, metadata={"classes": ["a", "b", "c", "d"]})
    loaded, metadata = load_checkpoint(path)
    assert isinstance(loaded, PointClassifier) and loaded.num_classes == 4 and metadata["classes"][3] == "d"
    loaded.eval()
    assert torch.equal(model(_points()), loaded(_points()))


def test_checkpoint_with_wrong_or_missing_keys_raises_with_their_names(tmp_path):
    model = I2PMAE(SMALL)
    path = save_checkpoint(tmp_path / "model.safetensors", model)
    header = json.loads(json.dumps(checkpoint_info(path)["config"].to_dict()))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "decoder_norm.bias"}
    state["h_encoder.encoder_norms.0.gamma"] = state.pop("h_encoder.encoder_norms.0.weight")
    state["mask_token"] = torch.zeros(1, 5)
    broken = tmp_path / "broken.safetensors"
    metadata = {"format": "i2pmae", "format_version": "1", "model_class": "I2PMAE", "metadata": "{}"}
    save_file(state, str(broken), metadata={**metadata, "config": json.dumps(header)})
    with pytest.raises(StateDictMismatchError) as err:
        load_checkpoint(broken)
    message = str(err.value)
    for name in ("decoder_norm.bias", "h_encoder.encoder_norms.0.weight", "h_encoder.encoder_norms.0.gamma"):
        assert name in message
    assert "mask_token: checkpoint (1, 5) vs model (1, 32)" in message


def test_foreign_files_raise_clear_errors(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(plain))
    with pytest.raises(CheckpointError, match="not saved by this project"):
        load_checkpoint(plain)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        checkpoint_info(text)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="convert it first"):
        (tmp_path / "official.pth").write_bytes(b"")
        load_checkpoint(tmp_path / "official.pth")
    with pytest.raises(TypeError, match="can only save"):
        save_checkpoint(tmp_path / "x.safetensors", torch.nn.Linear(1, 1))


@pytest.mark.parametrize("container", ["base_model", "model", "state_dict", None])
def test_official_layout_loads_every_key(tmp_path, container):
    source = _trained_looking(I2PMAE(SMALL))
    official = _to_official(source.state_dict())
    assert set(OFFICIAL_KEYS) <= set(official)  # the synthetic file really uses the official names
    official = {f"module.{k}": v for k, v in official.items()}  # saved from DistributedDataParallel
    official["module.clip_model.visual.proj"] = torch.zeros(768, 512)  # the teacher the official code saves
    checkpoint = {container: official, "epoch": 300, "optimizer": {"lr": 0.001}} if container else official
    path = tmp_path / "pretrain.pth"
    torch.save(checkpoint, path)
    model = load_official_checkpoint(path, SMALL)
    ours = source.state_dict()
    assert model.state_dict().keys() == ours.keys()
    assert all(torch.equal(value, ours[key]) for key, value in model.state_dict().items())


def test_point_m2ae_layout_loads_into_the_3d_only_config(tmp_path):
    cfg = dataclasses.replace(SMALL, target_2d=False, num_pred_points=16)
    state = _to_official(I2PMAE(cfg).state_dict())
    state["rec_head.weight"] = state.pop("rec_head_3d.weight")
    state["rec_head.bias"] = state.pop("rec_head_3d.bias")
    torch.save({"base_model": state}, tmp_path / "point_m2ae.pth")
    model = load_official_checkpoint(tmp_path / "point_m2ae.pth", cfg)
    assert torch.equal(model.rec_head_3d.weight, state["rec_head.weight"])
    with pytest.raises(StateDictMismatchError, match="missing keys.*rec_head_2d.weight"):
        load_official_checkpoint(tmp_path / "point_m2ae.pth", SMALL)


def test_official_layout_mismatch_lists_every_key(tmp_path):
    state = _to_official(I2PMAE(SMALL).state_dict())
    del state["token_prop.0.fuse.net.0.weight"]
    state["cls_head_finetune.0.weight"] = torch.zeros(2, 2)
    state["h_encoder.encoder_norms.1.weight"] = torch.zeros(3)
    torch.save({"base_model": state}, tmp_path / "bad.pth")
    with pytest.raises(StateDictMismatchError) as err:
        load_official_checkpoint(tmp_path / "bad.pth", SMALL)
    message = str(err.value)
    assert "token_prop.0.fuse.0.weight" in message and "cls_head_finetune.0.weight" in message
    assert "h_encoder.encoder_norms.1.weight: checkpoint (3,) vs model (16,)" in message


def test_official_loader_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"base_model": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=0.001)}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_official_state_dict(path)
    torch.save({"config": "not weights"}, path)
    with pytest.raises(CheckpointError, match="non-tensor entries: config"):
        load_official_state_dict(path)


def test_convert_and_load_pretrained_encoder(tmp_path):
    source = _trained_looking(I2PMAE(SMALL))
    torch.save({"base_model": _to_official(source.state_dict())}, tmp_path / "official.pth")
    converted = convert_official_checkpoint(
        tmp_path / "official.pth", tmp_path / "converted.safetensors", SMALL
    )
    model, metadata = load_checkpoint(converted)
    assert metadata["converted_from"].endswith("official.pth") and metadata["teacher"] == "stand-in"
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
    for path in (converted, tmp_path / "official.pth"):
        classifier = PointClassifier(SMALL, num_classes=3)
        load_pretrained_encoder(classifier, path)
        for key, value in source.h_encoder.state_dict().items():
            assert torch.equal(classifier.h_encoder.state_dict()[key], value)


POISONED = "h_encoder.encoder_norms.0.weight"


def _poisoned_checkpoint(path, value: float):
    model = _trained_looking(I2PMAE(SMALL))
    with torch.no_grad():
        model.state_dict()[POISONED][1] = value
    return save_checkpoint(path, model), model


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path, value):
    path, model = _poisoned_checkpoint(tmp_path / "bad.safetensors", value)
    message = rf"bad\.safetensors: tensor '{POISONED}' holds 1 NaN or infinite value\(s\) out of 8"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=POISONED):
        load_pretrained_encoder(PointClassifier(SMALL, num_classes=3), path)
    torch.save({"base_model": _to_official(model.state_dict())}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match=rf"official\.pth: tensor '{POISONED}'"):
        load_official_state_dict(tmp_path / "official.pth")


def test_the_app_refuses_a_non_finite_checkpoint_with_a_sentence(tmp_path, monkeypatch):
    from app import resources

    path, _ = _poisoned_checkpoint(tmp_path / "bad.safetensors", float("nan"))
    monkeypatch.setenv(resources.CHECKPOINT_ENV, str(path))
    resources._load_model.cache_clear()
    try:
        with pytest.raises(resources.Unavailable, match=rf"cannot be loaded: .*'{POISONED}' holds 1 NaN"):
            resources.get_model()
    finally:
        resources._load_model.cache_clear()


def test_nonfinite_tensors_names_every_damaged_tensor_with_its_count(tmp_path):
    model = _trained_looking(I2PMAE(SMALL))
    state = model.state_dict()
    with torch.no_grad():
        state[POISONED][:3] = float("nan")
        state["decoder_norm.bias"][0] = float("inf")
        state["mask_token"][..., 0] = -float("inf")
    path = save_checkpoint(tmp_path / "bad.safetensors", model)
    damaged = {POISONED: (3, 8), "decoder_norm.bias": (1, 16)}
    assert nonfinite_tensors(path) == {**damaged, "mask_token": (1, 32)}
    assert nonfinite_tensors(path, minus_inf_ok={"mask_token"}) == damaged
    with pytest.raises(CheckpointError, match="NaN or infinite"):  # loading still stops at the first one
        load_checkpoint(path)


class _RunsCode:
    """Pickles to a call of os.mkdir: loading the pickle would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-pickle"])
def test_a_pth_is_recognised_by_its_first_bytes_and_never_unpickled(tmp_path, zipped):
    marker = tmp_path / "code_ran"
    pth = tmp_path / "official.pth"
    torch.save({"base_model": _RunsCode(marker)}, pth, _use_new_zipfile_serialization=zipped)
    kind = "zip archive" if zipped else "pickle"
    command = (f"i2pmae checkpoint convert {pth} {tmp_path / 'official.safetensors'} "
               "--config configs/pretrain/paper.yaml")
    with pytest.raises(CheckpointError, match=rf"official\.pth: a {kind} as torch\.save writes") as err:
        read_safetensors_header(pth)
    assert str(err.value).endswith(f"converts with: {command}") and "\n" not in str(err.value)
    renamed = pth.rename(tmp_path / "renamed.safetensors")  # the convert command must not overwrite it
    with pytest.raises(CheckpointError, match=r"renamed\.safetensors .*renamed_converted\.safetensors"):
        checkpoint_info(renamed)
    assert not marker.exists()


def test_empty_truncated_and_foreign_files_get_one_line_errors(tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", I2PMAE(SMALL))
    data = good.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    cases = {
        "empty": (b"", "0 bytes; safetensors: header too small"),
        "header-cut": (data[: header_end // 2], "invalid header length"),
        "data-cut": (data[: header_end + 100], "incomplete metadata, file not fully covered"),
        "text": (b"x,y,z\n0,0,0\n", "header too large"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        message = rf"{name}\.safetensors: not a safetensors checkpoint, or a truncated one \(.*{reason}\)$"
        with pytest.raises(CheckpointError, match=message):
            read_safetensors_header(path)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
    metadata, shapes = read_safetensors_header(good)
    assert metadata["model_class"] == "I2PMAE" and shapes["mask_token"] == (1, 32)
