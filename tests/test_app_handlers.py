"""The explorer's handlers, caches and figures, without a browser or a server."""

import hashlib
import json
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from helpers import SMALL_SUPPORT_CLASSES, save_tiny_checkpoint, tiny_model, write_small_support

from app import evaluation, figures, handlers, rendering, resources, shapes
from app import support_set as support_set_module
from app.cache import LRUCache, file_digest
from app.paths import MANIFEST_PATH
from app.resources import CHECKPOINT_ENV
from i2pmae.evaluate import probe_path
from i2pmae.explore import retokenise
from i2pmae.projection import pixel_coords

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MESH = ASSETS / "chair_0002.off"
CLOUD = ASSETS / "toilet_0001.npy"


pytestmark = pytest.mark.usefixtures("fresh_app")  # empty caches, no checkpoint unless a test sets one


# ------------------------------------------------------------------------------------------------ cache
def test_lru_evicts_the_least_recently_used():
    cache = LRUCache(2)
    calls = []

    def make(key):
        return lambda: calls.append(key) or key.upper()

    assert cache.get_or_compute("a", make("a")) == "A"
    cache.get_or_compute("b", make("b"))
    cache.get_or_compute("a", make("a"))  # "a" is now the most recent
    cache.get_or_compute("c", make("c"))  # evicts "b"
    assert "a" in cache and "c" in cache and "b" not in cache
    assert calls == ["a", "b", "c"] and (cache.hits, cache.misses) == (1, 3)
    with pytest.raises(ValueError, match="maxsize"):
        LRUCache(0)


def test_lru_is_safe_under_threads():
    cache = LRUCache(8)
    errors = []

    def work(i):
        try:
            for j in range(200):
                assert cache.get_or_compute((i + j) % 16, lambda j=j: (i + j) % 16) == (i + j) % 16
        except AssertionError as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) == 8


def test_file_digest_is_sha256_of_the_bytes(tmp_path):
    data = np.random.default_rng(0).bytes(3 * 2**20 + 17)  # spans several read chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ figures
def test_thumbnail_draws_the_nearest_point_on_top():
    points = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    image = figures.thumbnail(points, size=64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    painted = (image != figures.THUMB_BACKGROUND).any(-1)
    assert painted.sum() == 3 * (2 * figures.THUMB_DOT + 1) ** 2  # three separate dots
    rows = np.flatnonzero(painted.any(1))
    assert rows.min() < 64 * figures.THUMB_MARGIN + 3 and rows.max() > 64 * (1 - figures.THUMB_MARGIN) - 3


def test_depth_views_share_one_colour_axis_and_blank_empty_pixels():
    depth = np.zeros((3, 8, 8), dtype=np.float32)
    depth[0, 2, 3], depth[2, 5, 5] = 0.5, 2.0
    fig = figures.depth_views_figure(depth)
    assert [t.coloraxis for t in fig.data] == ["coloraxis"] * 3
    z0 = np.asarray(fig.data[0].z, dtype=float)
    assert z0[2, 3] == 0.5 and np.isnan(z0).sum() == 63
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.5, 2.0)


def test_masks_figure_shows_every_token_once_per_mask():
    rng = np.random.default_rng(0)
    centers, points = rng.normal(size=(64, 3)), rng.normal(size=(512, 3))
    masks = [rng.random(64) < 0.8, rng.random(64) < 0.5]
    fig = figures.masks_figure(points, centers, masks, ["a", "b"], rng.random(64))
    by_name = {}
    for trace in fig.data:
        by_name.setdefault(trace.name, []).append(len(trace.x))
    assert by_name["masked token"] == [int(m.sum()) for m in masks]
    assert by_name["visible token"] == [int((~m).sum()) for m in masks]
    assert sum(bool(t.showlegend) for t in fig.data if t.name == "visible token") == 1


def test_reconstruction_and_embedding_figures():
    rng = np.random.default_rng(0)
    panel = figures.ReconstructionPanel("x", rng.random((5, 3)), rng.random((7, 3)), rng.random((9, 3)))
    fig = figures.reconstruction_figure([panel, panel])
    assert [len(t.x) for t in fig.data] == [5, 7, 9] * 2
    assert {t.name for t in fig.data} == {"visible input", "masked ground truth", "prediction"}
    emb = figures.embedding_figure(rng.random((6, 2)), np.array([0, 0, 1, 1, 0, 1]),
                                   np.array([False, False, False, False, True, True]), ["a", "b"],
                                   current=np.zeros(2))
    assert [len(t.x) for t in emb.data] == [2, 1, 2, 1, 1]


# ------------------------------------------------------------------------------------------------ inputs
def test_parameter_checks():
    assert handlers.tau_from_log10(0.0) == 1.0 and handlers.tau_from_log10(-5) == pytest.approx(1e-5)
    assert [handlers.level_index(t) for t in (512, 256, 64)] == [0, 1, 2]
    for bad in (lambda: handlers.tau_from_log10(2), lambda: handlers.level_index(100),
                lambda: handlers.check_mask_ratio(1.0), lambda: shapes.check_num_points(10)):
        with pytest.raises(ValueError):
            bad()


def test_upload_class_names():
    assert evaluation.upload_class("/tmp/x/mug_01.obj") == "mug"
    assert evaluation.upload_class("night_stand-3.ply") == "night_stand"
    assert evaluation.upload_class("lamp.ply") == "lamp"
    with pytest.raises(ValueError, match="<class>_<number>"):
        evaluation.upload_class("0007.ply")
    assert evaluation.group_uploads(["a_1.ply", "b_1.ply", "a_2.ply"]) == {"a": ["a_1.ply", "a_2.ply"],
                                                                         "b": ["b_1.ply"]}


def test_episode_is_disjoint_balanced_and_seeded():
    labels = np.repeat(np.arange(4), 30)
    ep = evaluation.draw_episode(labels, [1, 3], shot=5, seed=7)
    assert len(ep.support) == 10 and len(ep.query) == 2 * 20
    assert not set(ep.support) & set(ep.query)
    assert np.bincount(labels[ep.support], minlength=4).tolist() == [0, 5, 0, 5]
    again = evaluation.draw_episode(labels, [1, 3], shot=5, seed=7)
    assert np.array_equal(ep.support, again.support) and np.array_equal(ep.query, again.query)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.ply", b"", "empty"),
    ("nan.xyz", b"0 0 0\nnan 1 2\n1 1 1\n", "nan.xyz"),
    ("junk.ply", bytes(range(256)) * 8, "junk.ply"),
])
def test_bad_files_raise_readable_gradio_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(gr.Error, match=message):
        handlers.explore(str(path))


def test_clearing_the_shape_blanks_every_output():
    # + reconstruction, classes (confidences, text, novelty), the sampler panels, the box plots, the sweep,
    # the surfaces and the renders
    expected = (len(handlers.ExploreResult._fields) + 2 + 3 + len(handlers.GuidanceResult._fields) + 2
                + len(handlers.SurfaceResult._fields) + len(handlers.RenderResult._fields))
    assert len(handlers.cleared()) == expected


def test_no_shape_and_oversized_upload(tmp_path, monkeypatch):
    with pytest.raises(gr.Error, match="no shape yet"):
        handlers.explore(None)
    monkeypatch.setattr(shapes, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(gr.Error, match="upload limit"):
        handlers.explore(str(MESH))


def test_an_uploaded_gltf_is_read_alone(tmp_path):
    """The library reads a .gltf's buffers from its folder; an upload is one file, and nothing beside it is
    opened, even where the upload's folder holds the buffer it names."""
    import trimesh

    for name, data in trimesh.exchange.gltf.export_gltf(trimesh.Scene(trimesh.creation.box())).items():
        (tmp_path / name).write_bytes(data)
    refusal = r"model.gltf: the glTF file refers to other files \(gltf_buffer.*\.zip"
    with pytest.raises(gr.Error, match=refusal):
        handlers.explore(str(tmp_path / "model.gltf"), num_points=1024)


# ------------------------------------------------------------------------------------------------ pipeline
def test_explore_builds_every_panel_and_converts_meshes():
    result = handlers.explore(str(MESH), num_points=1024)
    assert "chair_0002.off" in result.summary and "mesh" in result.summary
    assert Path(result.mesh).suffix == ".glb" and Path(result.mesh).stat().st_size > 0
    assert len(result.depth.data) == 3
    assert len(result.cloud.data[0].x) == 1024
    assert "| 10 most salient tokens kept visible |" in result.stats
    figure, text = handlers.reconstruct(str(MESH), num_points=1024)
    assert "No checkpoint found at" in text and "No checkpoint found at" in figure.layout.annotations[0].text
    cloud = handlers.explore(str(CLOUD), num_points=1024)
    assert cloud.mesh is None and "point cloud" in cloud.summary


def test_mesh_files_are_bounded_and_one_pruned_under_a_cached_shape_is_made_again(monkeypatch, tmp_path):
    import os

    monkeypatch.setattr(shapes, "_output_dir", tmp_path)
    glb = Path(shapes.load_shape(MESH, 1024, 0).mesh_path)
    others = [tmp_path / f"other{i}.glb" for i in range(3)]
    for age, file in zip((30, 20, 10), others, strict=True):  # all used after the chair's file
        file.write_bytes(b"glb")
        os.utime(file, (glb.stat().st_mtime - age,) * 2)
    os.utime(glb, (glb.stat().st_mtime - 100,) * 2)
    shapes.prune_mesh_files(keep=3)
    assert not glb.exists() and all(f.exists() for f in others)  # the least recently used goes first
    again = shapes.load_shape(MESH, 1024, 0)  # still cached, its file gone: read and written again
    assert again.mesh_path == str(glb) and glb.stat().st_size > 0
    shapes.prune_mesh_files(keep=1)
    assert sorted(tmp_path.glob("*.glb")) == [glb]  # the reload made it the most recently used
    assert shapes.MAX_MESH_FILES > shapes.SHAPE_CACHE_SIZE


def test_the_mesh_folder_is_removed_when_the_process_ends():
    import subprocess
    import sys

    code = ("from app import shapes; folder = shapes.output_dir(); (folder / 'x.glb').write_bytes(b'1'); "
            "print(folder)")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not Path(done.stdout.strip()).exists()


def test_slider_moves_reuse_the_analysis(monkeypatch):
    calls = []
    original = shapes.in_worker

    def counting(fn, *args, **kwargs):  # counted here: the analysis itself runs in the worker process
        if fn is shapes.analyse_shape:
            calls.append(1)
        return original(fn, *args, **kwargs)

    monkeypatch.setattr(shapes, "in_worker", counting)
    handlers.explore(str(MESH), num_points=1024)
    greedy = handlers.remask(str(MESH), num_points=1024, log10_tau=-5.0)
    uniform = handlers.remask(str(MESH), num_points=1024, log10_tau=1.0, mask_ratio=0.5, level_tokens=512)
    assert calls == [1]  # the teacher ran once for three requests
    assert greedy.stats != uniform.stats
    handlers.explore(str(MESH), num_points=1024, seed=1)  # a new sample is a new analysis
    assert calls == [1, 1]


def test_greedy_guidance_keeps_the_most_salient_tokens_visible():
    result = shapes.analyse(str(MESH), 1024, 0, "efficientnet-lite0")
    kept = {}
    for log10_tau in (-5.0, 1.0):
        stats = handlers.mask_panels(result, 64, 0.8, log10_tau, 0).stats
        row = next(line for line in stats.splitlines() if line.startswith("| 10 most salient"))
        kept[log10_tau] = [int(cell) for cell in row.strip("|").split("|")[1:]]  # [random, guided]
    assert kept[-5.0][1] >= 9 > kept[-5.0][0]  # 13 visible of 64: near-greedy keeps (almost) all the top 10
    assert kept[1.0][0] == kept[-5.0][0]  # the random mask ignores tau
    assert kept[1.0][1] < kept[-5.0][1]


# ------------------------------------------------------------------------------------------------ checkpoint
@pytest.fixture
def tiny_checkpoint(tmp_path, monkeypatch):
    """The tiny model as the app's checkpoint, with the 2-class support slice."""
    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    monkeypatch.setenv(CHECKPOINT_ENV, str(path))
    monkeypatch.setattr(support_set_module, "SUPPORT_PATH", write_small_support(tmp_path / "support.npz"))
    return path


def test_retokenise_uses_the_cached_teacher_maps():
    analysis = shapes.analyse(str(MESH), 2048, 0, "efficientnet-lite0").analysis
    assert retokenise(tiny_model((512, 256, 64), 2048), analysis) is analysis
    own = retokenise(tiny_model(), analysis)
    assert [c.shape[1] for c in own.hierarchy.centers] == [256, 128, 32]
    assert torch.equal(own.points, analysis.points[:, :1024]) and own.teacher_maps is analysis.teacher_maps
    top = own.hierarchy.centers[-1]  # (1, 32, 3)
    views = analysis.teacher_maps.views
    pixels = pixel_coords(views, top)  # (1, V, 32, 2) row, col
    up = torch.nn.functional.interpolate(analysis.teacher_maps.saliency, size=views.depth.shape[-2:],
                                         mode="bicubic", align_corners=False)  # (1, V, H, W), brute force
    brute = torch.stack([up[0, v, pixels[0, v, :, 0], pixels[0, v, :, 1]] for v in range(up.shape[1])])
    assert torch.allclose(own.token_saliency[-1][0], brute.mean(0), rtol=1e-4, atol=1e-7)


def test_reconstruction_with_a_checkpoint(tiny_checkpoint):
    figure, text = handlers.reconstruct(str(MESH), num_points=1024)
    assert text.count("Chamfer-L2") == 2 and "its own 32 top tokens" in text
    assert "| Hausdorff distance ↓ |" in text and "| F-score at d = 0.05 ↑ |" in text
    assert [t.name for t in figure.data] == ["visible input", "masked ground truth", "prediction"] * 2
    visible, truth, predicted = (len(t.x) for t in figure.data[:3])
    assert truth == predicted  # P = K_h predicted points per masked token at the 256 level
    assert handlers.reconstruct(str(MESH), num_points=1024)[0] is figure  # cached
    assert handlers.reconstruct(str(MESH), num_points=1024, log10_tau=-5.0)[0] is not figure


def test_classify_and_few_shot_with_a_checkpoint(tiny_checkpoint, tmp_path):
    confidences = handlers.classify(str(MESH))
    assert set(confidences) == set(SMALL_SUPPORT_CLASSES) == set(handlers.support_classes())
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-5)
    uploads = []
    for name, i in (("mug", 0), ("mug", 1), ("lamp", 2), ("lamp", 3)):
        path = tmp_path / f"{name}_{i}.npy"
        np.save(path, np.random.default_rng(i).normal(size=(1500, 3)).astype(np.float32))
        uploads.append(str(path))
    text, prediction, plot = handlers.few_shot([], 2, 0, uploads, None)  # uploaded classes only
    assert "2-way 2-shot" in text and "queries" not in text and prediction is None
    uploads = uploads[:2]
    text, prediction, plot = handlers.few_shot(list(SMALL_SUPPORT_CLASSES), 2, 0, uploads, str(MESH))
    assert "3-way 2-shot" in text and "40 queries" in text and "±" in text
    assert set(prediction) == {*SMALL_SUPPORT_CLASSES, "mug"}
    assert len(plot.data) == 2 * 2 + 1 + 1  # support and query per bundled class, uploaded support, current
    with pytest.raises(gr.Error, match="at least 2 classes"):
        handlers.few_shot(["chair"], 2, 0, [], None)
    with pytest.raises(gr.Error, match="at least 2 files per class"):
        handlers.few_shot(["chair"], 2, 0, uploads[:1], None)


@pytest.mark.parametrize("width", [96, 5])
def test_a_shipped_probe_is_used_when_it_fits_the_checkpoint(tiny_checkpoint, width):
    from i2pmae.evaluate import LinearProbe, save_probe

    probe = LinearProbe(torch.zeros(2, width), torch.tensor([0.0, 1.0]), ["chair", "table"])
    save_probe(probe, probe_path(tiny_checkpoint))  # beside the checkpoint, where `i2pmae classify` looks
    save_probe(probe, tiny_checkpoint.parent / "other.safetensors")  # another probe file is not picked
    label, text, _ = handlers.classify_panel(str(MESH))
    if width == 96:  # the tiny model's feature width
        assert "shipped probe `tiny_probe.safetensors`" in text
        assert label == pytest.approx({"chair": 1 / (1 + np.e), "table": np.e / (1 + np.e)})
    else:
        assert label is None and "do not belong together" in text


SHIPPED = sorted(resources.CHECKPOINT_DIR.glob("*.safetensors"))


@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoint in checkpoints/")
def test_the_shipped_checkpoint_classifies_the_bundled_modelnet_shapes(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV)  # find it the way `python app.py` does
    labelled = [e for e in json.loads(MANIFEST_PATH.read_text()) if e["label"]]
    correct = [max(c, key=c.get) == e["label"] for e in labelled
               for c in [handlers.classify(str(ASSETS / e["file"]))]]
    assert sum(correct) >= len(labelled) - 1  # train-split shapes: at most one miss
    label, text, _ = handlers.classify_panel(str(MESH))
    assert "shipped probe" in text and max(label, key=label.get) == "chair"


def test_the_app_prefers_the_cli_default_over_other_checkpoints(tmp_path, monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV)
    monkeypatch.setattr(resources, "CHECKPOINT_DIR", tmp_path)
    first = save_tiny_checkpoint(tmp_path / "a.safetensors")
    default = save_tiny_checkpoint(tmp_path / "b.safetensors")
    monkeypatch.setattr(resources, "DEFAULT_CHECKPOINT", default)
    assert resources.checkpoint_path() == default
    default.unlink()  # a Space that ships another file still finds one
    assert resources.checkpoint_path() == first


MODELNET40 = resources.CHECKPOINT_DIR / "i2pmae_tiny_modelnet40.safetensors"


@pytest.mark.skipif(not MODELNET40.is_file(), reason="no ModelNet40 checkpoint in checkpoints/")
def test_the_modelnet40_checkpoint_runs_with_its_own_probe_and_novelty_model(monkeypatch):
    monkeypatch.setenv(CHECKPOINT_ENV, str(MODELNET40))  # the opt-in way the README gives
    label, text, verdict = handlers.classify_panel(str(ASSETS / "chair_0001.off"))
    assert "shipped probe `i2pmae_tiny_modelnet40_probe.safetensors`" in text
    assert max(label, key=label.get) == "chair" and verdict["known"]
    assert not handlers.novelty(str(ASSETS / "bunny.obj"))["known"]

def test_panels_without_a_checkpoint_say_so():
    label, text, _ = handlers.classify_panel(str(MESH))
    assert label is None and "No checkpoint found at" in text
    with pytest.raises(gr.Error, match="No checkpoint found at"):
        handlers.few_shot(["chair", "table"], 3, 0, [], None)


# ------------------------------------------------------------------------------------------------ guidance
def test_guidance_panels_show_the_sampler_over_many_draws():
    paper = handlers.guidance_panels(str(MESH), num_points=1024, log10_tau=0.0)
    strong = handlers.guidance_panels(str(MESH), num_points=1024, log10_tau=-3.0)
    assert "1000 draws" in paper.numbers and "effective number of tokens" in paper.numbers
    assert [t.name for t in paper.rank_chart.data] == ["τ = ∞ (random)", "τ = 1 (paper)", "τ = 1 (current)",
                                                       "τ → 0 (greedy)"]
    random, _, current, greedy = (np.asarray(t.y) for t in strong.rank_chart.data)
    assert np.allclose(random.mean(), 13 / 64) and np.allclose(greedy, [1.0] * 13 + [0.0] * 51)
    assert current[:5].mean() > 0.9 > 0.05 > current[-20:].mean()  # strong guidance: salient ones stay
    chances = [np.asarray(t.marker.color) for t in paper.visibility.data if t.name == "tokens"]
    assert len(chances) == 2 and all(c.shape == (64,) for c in chances)
    fine = handlers.guidance_panels(str(MESH), num_points=1024, level_tokens=512)
    shapes_512 = [np.asarray(t.marker.color).shape for t in fine.visibility.data if t.name == "tokens"]
    assert shapes_512 == [(512,)] * 2
    with pytest.raises(gr.Error, match="log10"):
        handlers.guidance_panels(str(MESH), num_points=1024, log10_tau=-9.0)


def test_presets_set_the_temperature():
    assert handlers.preset_log10_tau("paper (τ = 1)") == 0.0
    assert handlers.preset_log10_tau(handlers.STRONG_PRESET) == -3.0
    with pytest.raises(gr.Error, match="unknown preset"):
        handlers.preset_log10_tau("loud")


def test_spread_and_sweep_without_a_checkpoint_say_so_but_keep_the_saliency_curve():
    boxes = handlers.chamfer_boxes(str(MESH), num_points=1024)
    assert "No checkpoint found at" in boxes.layout.annotations[0].text
    sweep = handlers.tau_sweep(str(MESH), num_points=1024, log10_tau=-3.0)
    kept = np.asarray(sweep.data[0].y)
    assert len(sweep.data) == 1 and len(kept) == 7 and kept[0] > kept[-1]  # tau = 1e-5 keeps the most


def test_spread_and_sweep_with_a_checkpoint(tiny_checkpoint):
    boxes = handlers.chamfer_boxes(str(MESH), num_points=1024, log10_tau=-3.0)
    assert [t.name for t in boxes.data] == ["random", "2D-guided (τ = 0.001)"]
    assert all(len(t.y) == 32 and np.all(np.asarray(t.y) > 0) for t in boxes.data)
    figure, _ = handlers.reconstruct(str(MESH), num_points=1024, log10_tau=-3.0, mask_seed=5)
    single = float(figure.layout.annotations[1].text.split("Chamfer-L2 ")[1])
    assert np.isclose(boxes.data[1].y[5], single, rtol=1e-2)  # seed 5 of the box is the draw shown in 3D
    sweep = handlers.tau_sweep(str(MESH), num_points=1024, log10_tau=-3.0)
    assert [t.yaxis for t in sweep.data] == [None, "y2"] and len(sweep.data[1].y) == 7  # Chamfer: right axis
    again = handlers.chamfer_boxes(str(MESH), num_points=1024, log10_tau=-3.0)  # cached: the same draws
    assert np.array_equal(again.data[1].y, boxes.data[1].y)


# ------------------------------------------------------------------------------------------------ novelty
@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoint in checkpoints/")
def test_the_shipped_novelty_model_tells_the_bundled_shapes_apart(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV)
    for entry in json.loads(MANIFEST_PATH.read_text()):
        verdict = handlers.novelty(str(ASSETS / entry["file"]))
        assert set(verdict) == {"score", "known", "threshold"}
        assert verdict["known"] == (entry["label"] is not None), (entry["file"], verdict)
    _, text, verdict = handlers.classify_panel(str(ASSETS / "airplane.ply"))
    assert "Not one of the 10 classes this classifier knows" in text and not verdict["known"]
    assert f"{verdict['score']:.3g}" in text


def test_without_a_shipped_novelty_model_one_is_fitted_on_the_support_shapes(tiny_checkpoint):
    verdict = handlers.novelty(str(MESH))
    assert isinstance(verdict["score"], float) and isinstance(verdict["known"], bool)
    assert verdict["known"] == (verdict["score"] <= verdict["threshold"])
    _, text, again = handlers.classify_panel(str(MESH))
    assert again == verdict and "novelty score" in text
    with pytest.raises(gr.Error, match="no shape yet"):
        handlers.novelty(None)


# ------------------------------------------------------------------------------------------------ evidence
def test_evidence_handlers_read_the_record_named_by_the_environment(monkeypatch, tmp_path):
    from app.evidence import EVIDENCE_ENV

    monkeypatch.setenv(EVIDENCE_ENV, str(tmp_path / "ablation.json"))
    assert "does not exist" in handlers.evidence_record()["note"]
    figure, text, table = handlers.evidence_panel()
    assert "does not exist" in text and table == "" and figure.layout.annotations[0].text
    run = {"svm_accuracy": 0.9, "fewshot_5way_10shot": 0.8, "commit": "abc1234", "command": "x", "seconds": 1}
    record = {"seeds": [0], "differences": [],
              "rows": [{"name": "i2p-random", "label": "I2P-MAE, random mask", "per_seed": {"0": run}}]}
    (tmp_path / "ablation.json").write_text(json.dumps(record))  # read afresh: no restart needed
    answer = handlers.evidence_record()
    assert answer["rows"] == record["rows"] and "only seed 0" in answer["note"]
    assert "| I2P-MAE, random mask | 90.00 | 80.00 |" in handlers.evidence_panel().table


# ---------------------------------------------------------------------------------------------- Open3D panel
def test_surfaces_of_both_reconstructions(tiny_checkpoint):
    import trimesh

    result = handlers.surface(str(MESH), num_points=1024, log10_tau=-3.0)
    assert "ball pivoting" in result.text and result.text.count("triangles") == 2
    assert sorted(Path(p).name for p in result.downloads) == [
        "surface_guided.glb", "surface_guided.ply", "surface_random.glb", "surface_random.ply"]
    for view in (result.random, result.guided):
        mesh = trimesh.load(view, force="mesh")
        assert len(mesh.faces) > 100 and np.abs(mesh.vertices).max() < 1.5  # in the unit sphere, y up
    ply = trimesh.load(next(p for p in result.downloads if p.endswith("guided.ply")), process=False)
    glb = trimesh.load(result.guided, force="mesh", process=False)
    np.testing.assert_allclose(ply.vertices @ shapes.Z_UP_TO_Y_UP.T, glb.vertices, atol=1e-5)


def test_surface_without_a_checkpoint_says_so():
    result = handlers.surface(str(MESH), num_points=1024)
    assert result.random is result.guided is result.downloads is None
    assert "No checkpoint found at" in result.text


def test_a_failing_surface_child_is_reported_not_raised(tiny_checkpoint, monkeypatch):
    from i2pmae.bounded import BoundedRunError

    def crash(*args, **kwargs):
        raise BoundedRunError("building the surfaces crashed (SIGSEGV)")

    monkeypatch.setattr(rendering, "run_bounded", crash)
    result = handlers.surface(str(MESH), num_points=1024)
    assert result.random is None and "No surface: building the surfaces crashed (SIGSEGV)" in result.text


def test_renders_fall_back_to_a_note_when_open3d_fails(monkeypatch):
    from i2pmae.render import RenderError

    def fail(*args, **kwargs):
        raise RenderError("Open3D rendering took longer than 30 s and was stopped")

    monkeypatch.setattr(rendering, "render_stills", fail)
    result = handlers.renders(str(MESH), num_points=1024)
    assert result.stills == [] and "took longer than 30 s" in result.note and "plots above" in result.note


def _skip_unless_open3d_renders():
    from i2pmae.render import render_available

    available, reason = render_available()
    if not available:
        pytest.skip(reason)


def test_renders_of_the_shape_masks_and_reconstructions(tiny_checkpoint):
    _skip_unless_open3d_renders()
    result = handlers.renders(str(MESH), num_points=1024, log10_tau=-3.0)
    assert [c for _, c in result.stills] == list(rendering.STILL_CAPTIONS.values()) and result.note == ""
    for path, _ in result.stills:
        assert Path(path).stat().st_size > 1000
    with pytest.raises(gr.Error, match="level must be one of"):
        handlers.renders(str(MESH), num_points=1024, level_tokens=100)


def test_renders_without_a_checkpoint_show_the_shape_and_masks():
    _skip_unless_open3d_renders()
    result = handlers.renders(str(CLOUD), num_points=1024)
    assert [c for _, c in result.stills] == ["the shape", "random mask", "2D-guided mask"]


def test_request_folders_are_bounded(monkeypatch, tmp_path):
    monkeypatch.setattr(shapes, "_output_dir", tmp_path)
    monkeypatch.setattr(rendering, "MAX_FOLDERS", 3)
    folders = [rendering.request_folder(("key", i)) for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "open3d").iterdir()) == sorted(f.name for f in folders[-3:])
    assert rendering.request_folder(("key", 4)) == folders[-1]  # same key, same folder
