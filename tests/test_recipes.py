"""The official fine-tuning recipe and the official teacher input, as options of ours (issue 13, item 4)."""

import os

import pytest
import torch
import yaml
from helpers import GUIDED, MICRO_MODEL, FakeTeacher, micro_config, shapes

from i2pmae import train as tr
from i2pmae.config import I2PMAEConfig, TrainConfig, get_config, load_run_config
from i2pmae.data import ScaleAndTranslate
from i2pmae.engine import Generators
from i2pmae.model import I2PMAE, PointClassifier

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNE_DIR = os.path.join(REPO_ROOT, "configs", "finetune")


def test_the_paper_finetuning_recipe_is_the_official_one():
    with open(os.path.join(FINETUNE_DIR, "paper.yaml"), encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    # What `i2pmae finetune --pretrained CKPT` does: the checkpoint's config is the base, model: edits it.
    document["model"] = {**get_config("paper").to_dict(), **document["model"]}
    model_cfg, train_cfg = load_run_config(document)
    assert model_cfg.num_points == 1024 and model_cfg.group_sizes == (48, 24, 24)
    assert model_cfg.num_centers == (512, 256, 64)  # kept from pre-training, as the official code does
    assert model_cfg.classifier_local_radius == (0.24, 0.48, 0.96)
    assert train_cfg.fresh_final_norm and train_cfg.label_smoothing == 0.2 and train_cfg.epochs == 300
    tiny_document = yaml.safe_load(open(os.path.join(FINETUNE_DIR, "tiny.yaml"), encoding="utf-8"))
    assert not load_run_config({"train": tiny_document["train"]})[1].fresh_final_norm  # our CPU recipe


def test_fresh_final_norm_keeps_the_new_norm_and_loads_everything_else():
    cfg = I2PMAEConfig(**{**MICRO_MODEL, "group_sizes": (12, 6, 6)})  # other neighbours: same weights
    pretrained = I2PMAE(I2PMAEConfig(**MICRO_MODEL))
    with torch.no_grad():
        for p in pretrained.h_encoder.parameters():
            p.add_(torch.randn_like(p))
    state = pretrained.state_dict()
    top = f"encoder_norms.{cfg.num_levels - 1}."
    for fresh in (False, True):
        torch.manual_seed(1)
        classifier = PointClassifier(cfg, num_classes=3)
        initial = {k: v.clone() for k, v in classifier.h_encoder.state_dict().items()}
        classifier.load_encoder_state(state, fresh_final_norm=fresh)
        for key, value in classifier.h_encoder.state_dict().items():
            source = initial[key] if fresh and key.startswith(top) else state[f"h_encoder.{key}"]
            assert torch.equal(value, source), (fresh, key)
    assert torch.equal(initial[top + "weight"], torch.ones_like(initial[top + "weight"]))


def test_teacher_on_augmented_needs_a_live_teacher():
    with pytest.raises(ValueError, match="teacher_cache: false"):
        TrainConfig(teacher_on_augmented=True)
    assert TrainConfig(teacher_on_augmented=True, teacher_cache=False).teacher_on_augmented


@pytest.mark.parametrize("on_augmented", [False, True])
def test_the_teacher_sees_canonical_or_augmented_points(monkeypatch, on_augmented):
    from i2pmae import teachers

    seen = []
    real = teachers.compute_teacher_maps
    monkeypatch.setattr(teachers, "compute_teacher_maps", lambda t, p, **k: seen.append(p) or real(t, p, **k))
    cfg = I2PMAEConfig(**{**MICRO_MODEL, **GUIDED})
    points, _ = shapes(2, num_points=cfg.num_points)
    batch = {"points": torch.from_numpy(points), "index": torch.arange(2)}
    gens = Generators.create(0, 0, torch.device("cpu"))
    out = tr._pretrain_step(I2PMAE(cfg), batch, FakeTeacher(), ScaleAndTranslate(), gens, torch.device("cpu"),
                            teacher_on_augmented=on_augmented)
    augmented = ScaleAndTranslate()(batch["points"], Generators.create(0, 0, torch.device("cpu")).augment)
    expected = augmented if on_augmented else batch["points"]
    assert len(seen) == 1 and torch.equal(seen[0], expected) and torch.isfinite(out.loss)


def test_a_run_with_the_official_teacher_input_trains(tmp_path, monkeypatch):
    from helpers import write_data

    from i2pmae import teacher_cache

    monkeypatch.setattr(teacher_cache, "_load_teacher", lambda *args, **kwargs: FakeTeacher())
    config = micro_config(model=GUIDED, train={"epochs": 1, "teacher_cache": False,
                                               "teacher_on_augmented": True})
    model_cfg, train_cfg = load_run_config(config)
    result = tr.pretrain(model_cfg, train_cfg, write_data(tmp_path / "d.npz"), tmp_path / "run")
    assert result.checkpoint.is_file() and result.metrics["loss_2d"] > 0
