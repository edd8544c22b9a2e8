"""The explorer's scene layers: counts, groups, colours and the stills, on a small stand-in analysis."""

import numpy as np
import pytest
import torch
from helpers import SMALL_MODEL, StandInTeacher, make_clouds

from i2pmae.config import I2PMAEConfig
from i2pmae.explore import MASK_KINDS, analyse_shape, draw_mask_pair, reconstruct_pair
from i2pmae.model import I2PMAE
from i2pmae.scene import (
    TOKEN_POINT_SIZE,
    Layer,
    explorer_scene,
    mask_layers,
    reconstruction_layers,
    reconstruction_parts,
    saliency_colors,
    saliency_layer,
    still_scenes,
    uniform,
)
from i2pmae.visualize import MASKED_RGB, VISIBLE_RGB

pytestmark = pytest.mark.usefixtures("one_thread")
LEVEL = 1
MASK_STILLS = ["render_shape", "render_mask_random", "render_mask_guided"]
RECONSTRUCTION_STILLS = ["render_reconstruction_random", "render_reconstruction_guided"]


@pytest.fixture(scope="module")
def model() -> I2PMAE:
    torch.manual_seed(0)
    return I2PMAE(I2PMAEConfig(**SMALL_MODEL)).eval()


@pytest.fixture(scope="module")
def analysis(model):
    torch.manual_seed(0)
    return analyse_shape(model, make_clouds(1, SMALL_MODEL["num_points"])[0], StandInTeacher())


@pytest.fixture(scope="module")
def masks(model, analysis):
    return draw_mask_pair(model, analysis, mask_ratio=0.75, temperature=0.01, seed=0)


@pytest.fixture(scope="module")
def rec(model, analysis, masks):
    with torch.no_grad():
        return reconstruct_pair(model, analysis, masks)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722])  # (G,) Rec. 709 luma


def test_explorer_scene_layers_and_groups(analysis, masks, rec):
    scene = explorer_scene("blob", analysis, masks, LEVEL, rec)
    groups = [layer.group for layer in scene.layers]
    assert groups == ["shape", "saliency", "random", "random", "guided", "guided",
                      *["reconstruction random"] * 3, *["reconstruction guided"] * 3]
    assert scene.title == "blob" and len(scene.group("guided")) == 2
    # The viewer opens on the shape and the guided mask; everything else is there to toggle on.
    assert [layer.group for layer in scene.layers if layer.shown] == ["shape", "guided", "guided"]
    assert len(explorer_scene("blob", analysis, masks, LEVEL).layers) == 6


def test_mask_layers_split_the_level_tokens_by_the_mask(analysis, masks):
    centers = analysis.hierarchy.centers[LEVEL][0].numpy()  # (G_1, 3)
    layers = mask_layers(analysis, masks, LEVEL)
    for kind in MASK_KINDS:
        masked = getattr(masks, kind)[LEVEL].numpy()  # (G_1,)
        visible_layer, masked_layer = [layer for layer in layers if layer.group == kind]
        assert len(visible_layer.points) + len(masked_layer.points) == SMALL_MODEL["num_centers"][LEVEL]
        np.testing.assert_array_equal(visible_layer.points, centers[~masked])
        np.testing.assert_array_equal(masked_layer.points, centers[masked])
        np.testing.assert_allclose(visible_layer.colors, uniform(VISIBLE_RGB, len(visible_layer.points)))
        np.testing.assert_allclose(masked_layer.colors, uniform(MASKED_RGB, len(masked_layer.points)))
        assert visible_layer.point_size == masked_layer.point_size == TOKEN_POINT_SIZE


def test_saliency_colours_brighten_with_saliency(analysis):
    layer = saliency_layer(analysis, LEVEL)
    saliency = analysis.token_saliency[LEVEL][0].numpy()  # (G_1,)
    luma = _luminance(layer.colors)
    assert luma[saliency.argmax()] > luma[saliency.argmin()] + 0.5
    # Inferno's luminance rises along the map: sorted by saliency, the colours never darken.
    assert np.all(np.diff(luma[np.argsort(saliency, kind="stable")]) >= -1e-6)


def test_saliency_colours_of_a_flat_map_are_one_colour():
    colours = saliency_colors(np.full(5, 0.3))
    assert colours.shape == (5, 3) and np.all(colours == colours[0])


def test_reconstruction_layers_match_the_parts(rec):
    layers = reconstruction_layers(rec)
    assert len(layers) == 3 * len(MASK_KINDS)
    for row, kind in enumerate(MASK_KINDS):
        parts = reconstruction_parts(rec, row)
        group = [layer for layer in layers if layer.group == f"reconstruction {kind}"]
        assert [len(layer.points) for layer in group] == [len(cloud) for cloud in parts.values()]
        assert all(layer.shown == (row == 0) for layer in group), "only the first mask's is shown at first"
    masked = int(rec.masked_valid[0].sum())
    assert len(reconstruction_parts(rec, 0)["truth"]) == masked * SMALL_MODEL["group_sizes"][rec.head_level]


def test_still_scenes_keys_and_layers(analysis, masks, rec):
    stills = still_scenes("blob", analysis, masks, LEVEL, rec)
    assert list(stills) == MASK_STILLS + RECONSTRUCTION_STILLS
    assert list(still_scenes("blob", analysis, masks, LEVEL)) == MASK_STILLS
    assert all(layer.shown for scene in stills.values() for layer in scene.layers)
    for kind in MASK_KINDS:
        faint, *tokens = stills[f"render_mask_{kind}"].layers
        assert faint.point_size < tokens[0].point_size and len(faint.points) == SMALL_MODEL["num_points"]
        assert [layer.group for layer in tokens] == [kind, kind]
    assert len(stills["render_reconstruction_guided"].layers) == 3


@pytest.mark.parametrize(("points", "colors", "triangles", "message"), [
    (np.zeros((4, 2)), np.zeros((4, 2)), None, "points must be"),
    (np.zeros((4, 3)), np.zeros((3, 3)), None, "colors must be"),
    (np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((2, 2), np.int32), "triangles must be"),
])  # fmt: skip
def test_layer_rejects_bad_shapes(points, colors, triangles, message):
    with pytest.raises(ValueError, match=message):
        Layer("bad", points, colors, "shape", triangles=triangles)


def test_saliency_layer_needs_teacher_maps(model, analysis):
    plain = model.analyse(analysis.points)
    with pytest.raises(ValueError, match="no token saliency"):
        saliency_layer(plain, LEVEL)
