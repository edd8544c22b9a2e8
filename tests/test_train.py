"""Training loops: optimiser groups, schedule, config overrides, exact resume, teacher cache, fine-tuning."""

import math

import numpy as np
import pytest
import torch
from helpers import CLASSES, GUIDED, MICRO_MODEL, FakeTeacher, micro_config, shapes, write_data

from i2pmae import engine, teacher_cache
from i2pmae import train as tr
from i2pmae.config import load_run_config
from i2pmae.model import I2PMAE

pytestmark = pytest.mark.usefixtures("one_thread")


def run_pretrain(tmp_path, name, data, *, model=None, train=None, resume=False):
    model_cfg, train_cfg = load_run_config(micro_config(model, train))
    return tr.pretrain(model_cfg, train_cfg, data, tmp_path / name, resume=resume)


# --------------------------------------------------------------------------------------------- optimiser
def test_param_groups_follow_the_paper():
    model_cfg, _ = load_run_config(micro_config(model={"target_2d": True}))
    model = I2PMAE(model_cfg)
    decay, no_decay = engine.param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    ids_decay = {id(p) for p in decay["params"]}
    ids_no = {id(p) for p in no_decay["params"]}
    names = {n: p for n, p in model.named_parameters() if p.requires_grad}  # frozen ones are left out
    assert not ids_decay & ids_no and len(ids_decay | ids_no) == len(names)
    for name, param in names.items():
        expect_no_decay = param.ndim <= 1 or name.endswith(".bias") or name == "mask_token"
        assert (id(param) in ids_no) == expect_no_decay, name
    assert id(names["mask_token"]) in ids_no  # 2-D, excluded by model.no_weight_decay()
    assert any(p.ndim == 2 for p in decay["params"])


def test_lr_schedule_warmup_then_cosine():
    kw = {"total_steps": 110, "warmup_steps": 10, "lr": 1e-3, "min_lr": 1e-5}
    lrs = [engine.lr_at(s, **kw) for s in range(110)]
    np.testing.assert_allclose(lrs[:10], [1e-3 * (s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1e-3)
    assert lrs[60] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))
    assert engine.lr_at(110, **kw) == pytest.approx(1e-5)
    assert engine.lr_at(0, total_steps=5, warmup_steps=0, lr=1.0, min_lr=0.0) == pytest.approx(1.0)


def test_config_overrides_and_errors():
    model_cfg, train_cfg = load_run_config(
        micro_config(), ["lr=5e-4", "model.masking=guided", "encoder_depths=[2,1,1]", "train.grad_clip=null"]
    )
    assert train_cfg.lr == 5e-4 and train_cfg.grad_clip is None
    assert model_cfg.masking == "guided" and model_cfg.encoder_depths == (2, 1, 1)
    with pytest.raises(ValueError, match="unknown config key 'nope'"):
        load_run_config(micro_config(), ["nope=1"])
    with pytest.raises(ValueError, match="not key=value"):
        load_run_config(micro_config(), ["lr"])
    with pytest.raises(ValueError, match="unknown train config keys: bogus"):
        load_run_config(micro_config(train={"bogus": 1}))
    with pytest.raises(ValueError, match="unknown config sections"):
        load_run_config({**micro_config(), "optim": {}})
    with pytest.raises(ValueError, match="warmup_epochs"):
        load_run_config(micro_config(train={"warmup_epochs": 9}))


# --------------------------------------------------------------------------------------------- loops
def _state(run_dir):
    return torch.load(run_dir / engine.STATE_FILE, weights_only=True)


def test_resume_continues_exactly(tmp_path):
    data = write_data(tmp_path / "d.npz", num_shapes=18)  # 4 steps per epoch, 2 shapes left over
    train = {"epochs": 3, "save_every": 0}
    full = run_pretrain(tmp_path, "full", data, train=train)
    part = run_pretrain(tmp_path, "part", data, train={**train, "max_steps": 5})  # stops mid-epoch 1
    saved_at_5 = (tmp_path / "part" / engine.STATE_FILE).read_bytes()
    further = run_pretrain(tmp_path, "part", data, train={**train, "max_steps": 7}, resume=True)
    assert (part.step, further.step, full.step) == (5, 7, 12)
    # A kill after step 7 whose last saved state is step 5: steps 6 and 7 are logged but lost.
    (tmp_path / "part" / engine.STATE_FILE).write_bytes(saved_at_5)
    resumed = run_pretrain(tmp_path, "part", data, train=train, resume=True)
    assert resumed.step == 12
    a, b = _state(tmp_path / "full"), _state(tmp_path / "part")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    assert torch.equal(a["rng"][0]["mask"], b["rng"][0]["mask"])
    rows = engine.read_log(tmp_path / "part")
    assert [r["step"] for r in rows] == list(range(1, 13))  # the log continues, nothing repeated
    def timeless(log):
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in log]

    assert timeless(rows) == timeless(engine.read_log(tmp_path / "full"))


def test_run_directory_guards(tmp_path):
    data = write_data(tmp_path / "d.npz", num_shapes=8)
    run_pretrain(tmp_path, "run", data, train={"epochs": 1})
    with pytest.raises(FileExistsError, match="--resume"):
        run_pretrain(tmp_path, "run", data, train={"epochs": 1})
    with pytest.raises(ValueError, match=r"train.lr: 0.002 -> 0.1"):
        run_pretrain(tmp_path, "run", data, train={"epochs": 1, "lr": 0.1}, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_pretrain(tmp_path, "fresh", data, resume=True)
    with pytest.raises(ValueError, match="fewer than one batch"):
        run_pretrain(tmp_path, "big", data, train={"batch_size": 16})


def test_non_finite_loss_stops_the_run(tmp_path, monkeypatch):
    data = write_data(tmp_path / "d.npz", num_shapes=8)
    real = tr._pretrain_step
    calls = []

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(tr, "_pretrain_step", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite loss .* at step 1"):
        run_pretrain(tmp_path, "run", data)


def _fixed_mask_loss(model, data) -> float:
    """Mean loss over every shape and 5 seeded masks, in eval mode: comparable between models."""
    from i2pmae.data import open_dataset

    dataset = open_dataset(data, num_points=MICRO_MODEL["num_points"])
    points = torch.stack([dataset[i]["points"] for i in range(len(dataset))])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return float(np.mean([float(model.eval()(points, generator=gen).loss) for _ in range(5)]))


def test_tiny_pretraining_lowers_the_loss(tmp_path):
    from i2pmae.checkpoints import load_checkpoint

    data = write_data(tmp_path / "d.npz", num_shapes=8)
    result = run_pretrain(tmp_path, "run", data, train={"epochs": 20, "warmup_epochs": 2, "lr": 3e-3})
    assert len(engine.read_log(tmp_path / "run")) == 40
    trained, _ = load_checkpoint(result.checkpoint)
    untrained = I2PMAE(load_run_config(micro_config())[0])
    assert _fixed_mask_loss(trained, data) < 0.9 * _fixed_mask_loss(untrained, data)  # measured: 0.84


# --------------------------------------------------------------------------------------------- teacher cache
@pytest.fixture
def fake_teacher(monkeypatch):
    teacher = FakeTeacher()
    monkeypatch.setattr(teacher_cache, "_load_teacher", lambda *args, **kwargs: teacher)
    return teacher



def test_teacher_cache_key_tracks_points_teacher_and_projection():
    points = torch.randn(3, 64, 3)
    key = teacher_cache.teacher_cache_key(points, "efficientnet-lite0", 3, 224)
    assert key == teacher_cache.teacher_cache_key(points.clone(), "efficientnet-lite0", 3, 224)
    moved = points.clone()
    moved[2, 5, 1] += 1e-6
    assert key != teacher_cache.teacher_cache_key(moved, "efficientnet-lite0", 3, 224)
    assert key != teacher_cache.teacher_cache_key(points, "clip-vit-b16", 3, 224)
    assert key != teacher_cache.teacher_cache_key(points, "efficientnet-lite0", 2, 224)
    assert key != teacher_cache.teacher_cache_key(points, "efficientnet-lite0", 3, 112)
    assert key != teacher_cache.teacher_cache_key(points[:2], "efficientnet-lite0", 3, 224)


def test_cached_maps_equal_live_maps(tmp_path):
    from i2pmae.teachers import compute_teacher_maps

    teacher = FakeTeacher()
    points = torch.from_numpy(shapes(5)[0][:, :64])
    cache = teacher_cache.build_teacher_cache(teacher, points, key="k", batch_size=2, progress=False)
    cache.save(tmp_path / "c.safetensors", {"teacher": teacher.name})
    loaded = teacher_cache.TeacherCache.load(tmp_path / "c.safetensors")
    index = torch.tensor([3, 0])
    cached = loaded.maps(index, torch.device("cpu"))
    live = compute_teacher_maps(teacher, points[index])
    query = points[index][:, ::7] * 0.9  # (2, M, 3) some points, also off the projected ones
    (f_cached, s_cached), (f_live, s_live) = cached.sample(query), live.sample(query)
    torch.testing.assert_close(s_cached, s_live)
    torch.testing.assert_close(f_cached, f_live, atol=2e-2, rtol=1e-3)  # features are stored in float16
    assert loaded.features.dtype == torch.float16 and loaded.key == "k"


def test_pretraining_builds_the_cache_once_and_resumes_exactly(tmp_path, fake_teacher, monkeypatch):
    data = write_data(tmp_path / "d.npz", num_shapes=10)  # 2 steps per epoch, 2 shapes left over
    train = {"epochs": 2, "cache_dir": str(tmp_path / "cache")}
    full = run_pretrain(tmp_path, "full", data, model=GUIDED, train=train)
    calls = fake_teacher.calls
    assert calls > 0 and len(list((tmp_path / "cache").glob("teacher-*.safetensors"))) == 1
    run_pretrain(tmp_path, "part", data, model=GUIDED, train={**train, "max_steps": 3})
    resumed = run_pretrain(tmp_path, "part", data, model=GUIDED, train=train, resume=True)
    assert fake_teacher.calls == calls  # the cache was reused by both later runs
    assert resumed.step == full.step == 4
    a, b = _state(tmp_path / "full"), _state(tmp_path / "part")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert engine.read_log(tmp_path / "full")[-1]["loss_2d"] > 0


def test_live_teacher_gives_the_same_run_as_the_cache(tmp_path, fake_teacher):
    data = write_data(tmp_path / "d.npz", num_shapes=8)
    run_pretrain(tmp_path, "cached", data, model=GUIDED, train={"epochs": 1})
    run_pretrain(tmp_path, "live", data, model=GUIDED, train={"epochs": 1, "teacher_cache": False})
    cached, live = engine.read_log(tmp_path / "cached"), engine.read_log(tmp_path / "live")
    assert [r["loss_3d"] for r in cached] == pytest.approx([r["loss_3d"] for r in live], rel=1e-3)
    assert [r["loss_2d"] for r in cached] == pytest.approx([r["loss_2d"] for r in live], rel=1e-2)


def test_compiled_dense_modules_give_the_eager_run(tmp_path, fake_teacher):
    # aot_eager traces forward and backward as inductor does, without generating code, so the run must be
    # equal to the bit. Drop-path off: in a compiled region it draws its random numbers in another order.
    data = write_data(tmp_path / "d.npz", num_shapes=8)
    model = {**GUIDED, "drop_path": 0.0}
    run_pretrain(tmp_path, "eager", data, model=model, train={"epochs": 2})
    run_pretrain(tmp_path, "compiled", data, model=model, train={"epochs": 2, "compile": "aot_eager"})
    a, b = _state(tmp_path / "eager"), _state(tmp_path / "compiled")
    assert a["model"].keys() == b["model"].keys()  # in-place compilation keeps the checkpoint keys
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_compile_dense_hands_the_stages_and_embeddings_to_the_backend():
    model_cfg, _ = load_run_config(micro_config(model={"drop_path": 0.0}))
    model = I2PMAE(model_cfg)
    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    torch._dynamo.reset()  # graphs cached by an earlier test would not reach this backend
    points = torch.from_numpy(shapes(2)[0][:, :64])
    engine.compile_dense(model, None)(points, generator=torch.Generator().manual_seed(0))
    assert not graphs
    engine.compile_dense(model, counting_backend)(points, generator=torch.Generator().manual_seed(0))
    # one graph per dense module, 3 token embeddings and 3 + 2 transformer stages (no graph break), and
    # nothing else: FPS, kNN, masking and the gathers between the levels are not traced
    def roots(graph):  # the traced module's children the graph's nodes come from
        stacks = [node.meta.get("nn_module_stack") or {} for node in graph.graph.nodes]
        return {path.split(".")[1] for stack in stacks for path, _ in stack.values()}

    kinds = sorted(tuple(sorted(roots(g))) for g in graphs)
    assert kinds == [("blocks",)] * 5 + [("first_conv", "second_conv")] * 3
    with pytest.raises(ValueError, match="train.compile must be null or a torch.compile backend"):
        load_run_config(micro_config(train={"compile": "nope"}))


# --------------------------------------------------------------------------------------------- fine-tuning
def test_finetune_selects_on_validation_only(tmp_path, monkeypatch):
    from i2pmae.checkpoints import checkpoint_info, load_checkpoint

    data = write_data(tmp_path / "d.npz", num_shapes=30)
    pre = run_pretrain(tmp_path, "pre", data, train={"epochs": 1})
    config = micro_config(train={"epochs": 2, "val_fraction": 0.2, "votes": 2})
    model_cfg, train_cfg = load_run_config(config)
    start = {}  # the classifier's encoder as its loop starts: after loading the pre-trained weights
    real_start_loop = engine.start_loop

    def start_and_capture(model, *args, **kwargs):
        start.update({key: value.clone() for key, value in model.h_encoder.state_dict().items()})
        return real_start_loop(model, *args, **kwargs)

    monkeypatch.setattr(engine, "start_loop", start_and_capture)
    result = tr.finetune(model_cfg, train_cfg, data, tmp_path / "ft", pretrained=pre.checkpoint)
    info = checkpoint_info(result.checkpoint)
    meta = info["metadata"]
    assert info["model_class"] == "PointClassifier" and meta["classes"] == list(CLASSES)
    assert meta["val_shapes"] == 6  # 20 % of each class of 10
    best_logged = max(r["val_acc"] for r in engine.read_log(result.run_dir))
    assert meta["best_val_acc"] == pytest.approx(best_logged, abs=1e-5)
    model, _ = load_checkpoint(result.checkpoint)
    pretrained, _ = load_checkpoint(pre.checkpoint)
    assert model.h_encoder.state_dict().keys() == pretrained.h_encoder.state_dict().keys()
    for key, value in pretrained.h_encoder.state_dict().items():  # fine-tuning started from these weights
        assert torch.equal(start[key], value), key
    tuned = model.h_encoder.state_dict()
    assert not all(torch.equal(tuned[key], value) for key, value in start.items())  # and trained them
    assert (tmp_path / "ft" / tr.LAST_FILE).is_file()


def test_classifier_accuracy_with_voting_matches_a_manual_count():
    class Oracle(torch.nn.Module):
        def forward(self, p):  # class = sign of the mean x coordinate, unaffected by scaling, ties aside
            x = p[..., 0].mean(1)
            return torch.stack([x, -x], -1) * 100

    rng = np.random.default_rng(0)
    items = [{"points": torch.tensor(rng.normal(size=(8, 3)) + [s, 0, 0], dtype=torch.float32),
              "label": i % 2} for i, s in enumerate([1, -1] * 5)]
    assert tr.classifier_accuracy(Oracle(), items, votes=3, batch_size=4) == 1.0
    flipped = [{**d, "label": 1 - d["label"]} for d in items]
    assert tr.classifier_accuracy(Oracle(), flipped, votes=1) == 0.0
