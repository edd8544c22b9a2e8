"""The explore pipeline: saliency per level, paired masks, their statistics, and `i2pmae explore`."""

import itertools
import json
import math
import os

import numpy as np
import pytest
import torch

from i2pmae.cli import main
from i2pmae.cli.common import DEFAULT_CHECKPOINT
from i2pmae.config import get_config
from i2pmae.explore import (
    MaskPair,
    analyse_shape,
    chamfer_over_seeds,
    draw_mask_pair,
    mask_stats,
    reconstruct_shape,
    sampler_stats,
    softmax_strength,
    write_reconstructions,
)
from i2pmae.geometry import build_hierarchy
from i2pmae.io import load_points
from i2pmae.masking import guided_mask, num_visible
from i2pmae.model import I2PMAE, Analysis, create_model
from i2pmae.teachers import load_teacher

CENTERS, GROUPS = (128, 64, 16), (16, 8, 8)


ASSETS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets")


@pytest.fixture(scope="module")
def model() -> I2PMAE:
    return create_model("tiny", num_points=1024, num_centers=CENTERS, group_sizes=GROUPS)


@pytest.fixture(scope="module")
def analysis(model) -> Analysis:
    points = load_points(os.path.join(ASSETS, "airplane.ply"), 1024)
    return analyse_shape(model, points, load_teacher())


def test_analysis_levels_and_saliency(analysis: Analysis):
    assert [c.shape for c in analysis.hierarchy.centers] == [(1, g, 3) for g in CENTERS]
    assert [s.shape for s in analysis.token_saliency] == [(1, g) for g in CENTERS]
    # Token saliency is the view-averaged map value at the token centres (DESIGN 1.4).
    expected = analysis.teacher_maps.sample(analysis.hierarchy.centers[1])[1].mean(-1)
    torch.testing.assert_close(analysis.token_saliency[1], expected)
    top = analysis.token_saliency[-1][0]
    assert torch.all(top >= 0) and top.std() > 0.05 * top.mean(), "token saliency should not be flat"


def test_masks_have_exact_counts_and_nest(model: I2PMAE, analysis: Analysis):
    masks = draw_mask_pair(model, analysis, mask_ratio=0.75, temperature=0.01, seed=3)
    for pair in (masks.random, masks.guided):
        assert int((~pair[-1]).sum()) == num_visible(CENTERS[-1], 0.75)
        # A visible level-1 token is a kNN neighbour of a visible top token.
        visible_top = (~pair[2]).nonzero()[:, 0]
        neighbours = analysis.hierarchy.neighbor_idx[2][0, visible_top].flatten().unique()
        assert set(neighbours.tolist()) == set((~pair[1]).nonzero()[:, 0].tolist())


def test_random_mask_ignores_temperature_and_infinite_tau_is_random(model: I2PMAE, analysis: Analysis):
    sharp = draw_mask_pair(model, analysis, temperature=0.001, seed=5)
    flat = draw_mask_pair(model, analysis, temperature=math.inf, seed=5)
    for a, b in zip(sharp.random, flat.random, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(flat.random, flat.guided, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(sharp.guided[-1], sharp.random[-1])


def test_small_temperature_keeps_salient_tokens(model: I2PMAE, analysis: Analysis):
    masks = draw_mask_pair(model, analysis, mask_ratio=0.75, temperature=1e-6, seed=0)
    keep = num_visible(CENTERS[-1], 0.75)
    top = torch.topk(analysis.token_saliency[-1][0], keep).indices
    assert set(top.tolist()) == set((~masks.guided[-1]).nonzero()[:, 0].tolist())
    stats = mask_stats(analysis, masks, level=2)
    assert stats["top_salient_visible_guided"] == min(10, keep)
    assert stats["mean_saliency_visible_guided"] > stats["mean_saliency_visible_random"]


def test_mask_stats_by_hand():
    saliency = torch.arange(12, dtype=torch.float32)  # token i has saliency i
    hierarchy = build_hierarchy(torch.rand(1, 64, 3), (12,), (4,))
    points = torch.zeros(1, 64, 3)
    analysis = Analysis(points=points, canonical_points=points, hierarchy=hierarchy, teacher_maps=None,
                        token_saliency=[saliency[None]])
    visible_random = torch.tensor([0, 1, 2, 11])
    visible_guided = torch.tensor([11, 10, 9, 2])
    masks = MaskPair(random=[_mask(visible_random)], guided=[_mask(visible_guided)])
    stats = mask_stats(analysis, masks, level=0)
    assert stats["mean_saliency_visible_random"] == pytest.approx(14 / 4)
    assert stats["mean_saliency_visible_guided"] == pytest.approx(32 / 4)
    assert stats["visible_overlap"] == pytest.approx(2 / 6)  # {2, 11} of {0, 1, 2, 9, 10, 11}
    assert stats["top_salient_visible_random"] == 2  # top 10 = 2..11
    assert stats["top_salient_visible_guided"] == 4


def _mask(visible: torch.Tensor, size: int = 12) -> torch.Tensor:
    mask = torch.ones(size, dtype=torch.bool)
    mask[visible] = False
    return mask


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="needs the shipped checkpoint")
def test_cli_explore_writes_pictures(tmp_path, capsys):
    shape = os.path.join(ASSETS, "chair_0002.off")
    code = main(["explore", shape, "--out", str(tmp_path), "--num-points", "2048"])
    assert code == 0
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"depth_views.png", "saliency.png", "summary.json"}
    expected |= {f"masks_level{i}_{g}.png" for i, g in enumerate((512, 256, 64))}
    expected |= {f"reconstruction_{kind}.png" for kind in ("random", "guided")}  # the shipped checkpoint
    assert expected <= names
    for name in expected - {"summary.json"}:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "summary.json").read_text())
    top = summary["levels"][2]["tau=1"]
    assert top["tokens"] == 64 and top["visible_random"] == top["visible_guided"] == 13
    metrics = json.loads((tmp_path / "reconstruction.json").read_text())["metrics"]
    assert summary["reconstruction"]["metrics"] == metrics  # the summary holds them too
    for kind in ("random", "guided"):
        m = metrics[kind]
        assert 0 < m["chamfer_l2"] and 0 < m["hausdorff"] < 2 and 0 <= m["fscore"] <= 1 and m["threshold"] > 0
    assert "F-score@0.05" in capsys.readouterr().err
    from i2pmae.render import render_available

    if render_available()[0]:  # else the note on stderr says why, and the figures stand
        renders = {f"render_{stem}.png" for stem in ("shape", "mask_random", "mask_guided",
                                                     "reconstruction_random", "reconstruction_guided")}
        assert renders <= names


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="needs the shipped checkpoint")
def test_cli_explore_runs_the_teacher_and_loads_the_shape_once(tmp_path, monkeypatch):
    from i2pmae import explore, io

    calls = {"teacher": 0, "load": 0}
    real_maps, real_load = explore.compute_teacher_maps, io.load_points

    def count(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(explore, "compute_teacher_maps", count("teacher", real_maps))
    monkeypatch.setattr(io, "load_points", count("load", real_load))
    shape = os.path.join(ASSETS, "toilet_0001.npy")
    assert main(["explore", shape, "--out", str(tmp_path), "--temperature", "1", "0.01"]) == 0
    assert calls == {"teacher": 1, "load": 1}  # report and reconstructions share one analysis
    assert (tmp_path / "reconstruction_guided.ply").is_file()


def test_cli_explore_without_open3d_rendering_keeps_the_figures(tmp_path, capsys, monkeypatch):
    from i2pmae import render

    def fail(*args, **kwargs):
        raise render.RenderError("Open3D rendering crashed (SIGSEGV)")

    monkeypatch.setattr(render, "render_stills", fail)
    shape = os.path.join(ASSETS, "toilet_0001.npy")
    assert main(["explore", shape, "--out", str(tmp_path), "--num-points", "1024", "--temperature", "1"]) == 0
    err = capsys.readouterr().err
    assert "Open3D rendering crashed (SIGSEGV); the PNG figures above show the same layers" in err
    names = {p.name for p in tmp_path.iterdir()}
    assert "saliency.png" in names and not any(name.startswith("render_") for name in names)


def test_cli_explore_bad_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "junk.ply"
    bad.write_bytes(np.random.default_rng(0).bytes(300))
    assert main(["explore", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("i2pmae explore: error:") and "junk.ply" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_reconstructions_are_written_for_both_masks(tmp_path):
    model = I2PMAE(get_config("tiny")).eval()
    points = load_points(os.path.join(ASSETS, "bunny.obj"), model.cfg.num_points)
    analysis = analyse_shape(model, points, load_teacher())
    rec = reconstruct_shape(model, analysis, temperature=0.01, seed=3)
    written = write_reconstructions(rec, tmp_path, name="bunny", mask_ratio=0.8, temperature=0.01, seed=3)
    assert sorted(p.name for p in written) == sorted(
        [f"reconstruction_{kind}.{ext}" for kind in ("random", "guided") for ext in ("png", "ply")]
        + ["reconstruction.json"]
    )
    ply = (tmp_path / "reconstruction_guided.ply").read_text().splitlines()
    count = int(next(line for line in ply if line.startswith("element vertex")).split()[-1])
    body = np.loadtxt(ply[ply.index("end_header") + 1:])
    assert body.shape == (count, 6)
    # Three colours: visible input, masked ground truth, prediction.
    assert len(np.unique(body[:, 3:], axis=0)) == 3
    assert np.all(np.abs(body[:, :3]) < 2.0)
    record = json.loads((tmp_path / "reconstruction.json").read_text())
    assert (record["mask_ratio"], record["temperature"], record["seed"]) == (0.8, 0.01, 3)
    assert record["metrics"]["guided"]["chamfer_l2_per_token"] == pytest.approx(float(rec.chamfer[1]))


# ------------------------------------------------------------------------------------------------ sampler
def _plackett_luce_inclusion(p: list[float], keep: int) -> list[float]:
    """Exact chance that each item is among the first ``keep`` of an ordered draw without replacement."""
    chance = [0.0] * len(p)
    for order in itertools.permutations(range(len(p)), keep):
        prob, left = 1.0, 1.0
        for i in order:
            prob *= p[i] / left
            left -= p[i]
        for i in order:
            chance[i] += prob
    return chance


def _small_analysis(saliency: torch.Tensor) -> tuple[I2PMAE, Analysis]:
    """A 6-token top level over 24 points with the given top-level saliency (1, 6)."""
    model = create_model("tiny", num_points=24, num_centers=(12, 8, 6), group_sizes=(4, 2, 2))
    points = torch.rand(1, 24, 3, generator=torch.Generator().manual_seed(0))
    hierarchy = build_hierarchy(points, (12, 8, 6), (4, 2, 2))
    levels = [torch.zeros(1, g) for g in (12, 8)] + [saliency]
    return model, Analysis(points=points, canonical_points=points, hierarchy=hierarchy, teacher_maps=None,
                           token_saliency=levels)


def test_sampler_stats_equal_brute_force_counts_of_single_draws():
    saliency = torch.tensor([[0.9, 0.5, 0.4, 0.1, 0.05, 0.0]])
    model, analysis = _small_analysis(saliency)
    stats = sampler_stats(model, analysis, mask_ratio=0.5, temperature=0.2, draws=400, seed=7)
    generator = torch.Generator().manual_seed(7)  # the same stream, one mask at a time
    counts = torch.zeros(6)
    for _ in range(400):
        counts += ~guided_mask(saliency, 0.5, temperature=0.2, generator=generator)[0]
    torch.testing.assert_close(stats.visible_guided[-1], counts.double() / 400)
    assert stats.visible_guided[0].shape == (12,) and stats.draws == 400


def test_sampler_stats_match_the_exact_plackett_luce_inclusion_chances():
    saliency = torch.tensor([[0.9, 0.5, 0.4, 0.1, 0.05, 0.0]])
    model, analysis = _small_analysis(saliency)
    tau, draws = 0.3, 20_000
    stats = sampler_stats(model, analysis, mask_ratio=0.5, temperature=tau, draws=draws)
    exact = _plackett_luce_inclusion(torch.softmax(saliency[0] / tau, 0).tolist(), keep=3)
    tolerance = 4 * math.sqrt(0.25 / draws)  # 4 binomial standard errors at most
    assert np.allclose(stats.visible_guided[-1].numpy(), exact, atol=tolerance)
    log_ratio, effective = softmax_strength(saliency[0], tau)
    assert log_ratio == pytest.approx(0.9 / tau)
    p = torch.softmax(saliency[0].double() / tau, 0).numpy()
    assert effective == pytest.approx(math.exp(-(p * np.log(p)).sum()))


def test_infinite_temperature_is_the_uniform_random_sampler(model, analysis):
    stats = sampler_stats(model, analysis, mask_ratio=0.75, temperature=math.inf, draws=1000, seed=1)
    keep = num_visible(CENTERS[-1], 0.75)
    for guided, random in zip(stats.visible_guided, stats.visible_random, strict=True):
        assert torch.equal(guided, random)  # the same masks, draw for draw
    top = stats.visible_random[-1]
    assert float(top.mean()) == pytest.approx(keep / CENTERS[-1])  # every draw keeps exactly `keep`
    assert float((top - keep / CENTERS[-1]).abs().max()) < 4 * math.sqrt(0.25 / 1000)
    assert (stats.log_ratio, stats.effective_tokens) == (0.0, CENTERS[-1])
    assert stats.kept_guided == stats.kept_random


def test_chamfer_over_seeds_repeats_the_single_draw_reconstructions(analysis):
    model = I2PMAE(get_config("tiny", num_points=1024, num_centers=CENTERS, group_sizes=GROUPS)).eval()
    random, guided = chamfer_over_seeds(model, analysis, seeds=[0, 3], temperatures=[1.0, 0.01])
    assert random.shape == (2,) and guided.shape == (2, 2)
    for i, seed in enumerate((0, 3)):
        pair = draw_mask_pair(model, analysis, temperature=0.01, seed=seed)
        single = model.reconstruct(analysis, [m[None] for m in pair.guided]).chamfer[0]
        torch.testing.assert_close(guided[1, i], single, rtol=1e-4, atol=1e-7)
