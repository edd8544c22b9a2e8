"""Open3D stills in a child process: files, colours, hidden layers, meshes, framing and the failure paths.

Rendering tests skip (with the probe's reason) where Open3D cannot render; the failure paths and the input
checks run everywhere, since they replace or never reach the child's Open3D code.
"""

import faulthandler
import os
import time

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv
from PIL import Image

from i2pmae import render
from i2pmae.bounded import run_bounded
from i2pmae.render import RenderError, render_available, render_scene, render_stills, shared_camera
from i2pmae.scene import SHAPE_RGB, SURFACE_RGB, Layer, Scene, uniform
from i2pmae.visualize import MASKED_RGB, PREDICTED_RGB, VISIBLE_RGB

SIZE = (320, 240)  # (W, H): small stills keep the tests quick


def require_rendering() -> None:
    """Skip the calling test, with the probe's reason, where Open3D cannot render here."""
    ok, reason = render_available()
    if not ok:
        pytest.skip(f"Open3D cannot render here: {reason}")


def sphere(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) float32 points on the unit sphere."""
    v = np.random.default_rng(seed).normal(size=(count, 3))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def uv_sphere(rings: int = 12, segments: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A closed unit-sphere mesh: vertices (V, 3) and triangles (F, 3)."""
    polar = np.linspace(0, np.pi, rings + 1)[1:-1]  # (rings - 1,) without the poles
    azimuth = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    p, a = np.meshgrid(polar, azimuth, indexing="ij")  # (rings - 1, segments)
    ring = np.stack([np.sin(p) * np.cos(a), np.sin(p) * np.sin(a), np.cos(p)], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]).astype(np.float32)  # (V, 3)
    top, bottom = 0, len(vertices) - 1
    faces = []
    for s in range(segments):
        t = (s + 1) % segments
        faces.append([top, 1 + s, 1 + t])
        faces.append([bottom, 1 + (rings - 2) * segments + t, 1 + (rings - 2) * segments + s])
        for r in range(rings - 2):
            a0, a1 = 1 + r * segments + s, 1 + r * segments + t
            b0, b1 = a0 + segments, a1 + segments
            faces += [[a0, b0, b1], [a0, b1, a1]]
    return vertices, np.asarray(faces, np.int32)


def token_scene(*, hidden_red: bool = True) -> Scene:
    """A grey sphere cloud, blue visible and grey masked tokens on it, and (hidden) a red cloud."""
    cloud, tokens = sphere(400), sphere(40, seed=1)
    layers = [Layer("shape", cloud, uniform(SHAPE_RGB, len(cloud)), "shape", point_size=1.5),
              Layer("visible", tokens[:20], uniform(VISIBLE_RGB, 20), "guided", point_size=7.0),
              Layer("masked", tokens[20:], uniform(MASKED_RGB, 20), "guided", point_size=7.0)]
    if hidden_red:
        layers.append(Layer("hidden", cloud * 0.9, uniform(PREDICTED_RGB, len(cloud)), "random", shown=False))
    return Scene("sphere", layers)


def hue_pixels(image: np.ndarray, rgb, *, hue_tol: float = 0.03, min_saturation: float = 0.3) -> np.ndarray:
    """(H, W) bool: pixels of about the hue of ``rgb`` (any shade), not greys."""
    hsv = rgb_to_hsv(image.astype(np.float32) / 255)  # (H, W, 3)
    target = rgb_to_hsv(np.asarray(rgb, np.float32))
    distance = np.abs(hsv[..., 0] - target[0])
    distance = np.minimum(distance, 1 - distance)  # hue is circular
    return (distance < hue_tol) & (hsv[..., 1] > min_saturation)


def drawn(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that are not the white background."""
    return (image < 250).any(-1)


def load(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ------------------------------------------------------------------------------------------- rendering
def test_stills_are_pngs_of_the_shown_layers(tmp_path):
    require_rendering()
    paths = render_stills({"render_shape": token_scene(), "render_again": token_scene()}, tmp_path, size=SIZE)
    assert paths == [tmp_path / "render_shape.png", tmp_path / "render_again.png"]
    image = load(paths[0])
    assert image.shape == (SIZE[1], SIZE[0], 3)
    assert 0.02 < drawn(image).mean() < 0.9, "the still is blank or all paint"
    assert hue_pixels(image, VISIBLE_RGB).sum() > 20 * 9, "the blue visible tokens are missing"
    assert not hue_pixels(image, PREDICTED_RGB).any(), "a hidden (red) layer was drawn"
    np.testing.assert_array_equal(image, load(paths[1]))  # one camera for every still of a call


def test_still_is_framed_and_centred(tmp_path):
    require_rendering()
    ellipsoid = Layer("c", sphere(800) * [2, 1, 0.5], uniform(SHAPE_RGB, 800), "shape")
    (path,) = render_stills({"cloud": Scene("cloud", [ellipsoid])}, tmp_path, size=SIZE)
    rows, cols = np.nonzero(drawn(load(path)))
    height, width = SIZE[1], SIZE[0]
    spans = (rows.max() - rows.min()) / height, (cols.max() - cols.min()) / width
    assert max(spans) > 0.75, f"the shape fills too little of the frame: {spans}"
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < height - 1 and cols.max() < width - 1
    assert abs((rows.min() + rows.max()) / 2 - height / 2) < 0.05 * height
    assert abs((cols.min() + cols.max()) / 2 - width / 2) < 0.05 * width


def test_mesh_layer_is_lit(tmp_path):
    require_rendering()
    vertices, triangles = uv_sphere()
    mesh = Layer("surface", vertices, uniform(SURFACE_RGB, len(vertices)), "surface", triangles=triangles)
    (path,) = render_stills({"mesh": Scene("ball", [mesh])}, tmp_path, size=SIZE)
    image = load(path)
    surface = hue_pixels(image, SURFACE_RGB, hue_tol=0.05, min_saturation=0.15)
    assert surface.mean() > 0.1, "the mesh is missing"
    shades = np.unique(image[surface].astype(int).sum(-1))
    assert len(shades) > 10, "one flat colour: the mesh is not lit"


def test_render_scene_returns_an_image():
    require_rendering()
    # In its own child, so that this test process never loads Open3D's GL.
    image = run_bounded(render_scene, token_scene(hidden_red=False), size=SIZE,
                        memory_gib=render.RENDER_MEMORY_GIB, timeout_s=render.RENDER_TIMEOUT_S)
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
    assert hue_pixels(image, VISIBLE_RGB).any()


# ------------------------------------------------------------------------------------------- no Open3D
def test_camera_frames_every_scene_of_a_call():
    small = Scene("a", [Layer("a", sphere(100) * 0.1, uniform(SHAPE_RGB, 100), "shape")])
    large = Scene("b", [Layer("b", sphere(100) + 5, uniform(SHAPE_RGB, 100), "shape"),
                        Layer("far", sphere(10) + 100, uniform(SHAPE_RGB, 10), "shape", shown=False)])
    camera = shared_camera([small, large], SIZE)
    assert np.all(camera.corners[0] < -0.09) and np.all(camera.corners[1] > 5.9)
    assert np.all(camera.corners[1] < 7), "a hidden layer moved the frame"
    assert np.isclose(np.linalg.norm(camera.front), 1) and np.isclose(camera.front @ camera.up, 0)
    assert camera.front[2] > 0 and camera.up[2] > 0, "the view is from above, z up"


@pytest.mark.parametrize("scenes", [
    {},
    {"empty": Scene("empty")},
    {"hidden": Scene("hidden", [Layer("h", sphere(10), uniform(SHAPE_RGB, 10), "shape", shown=False)])},
    {"no points": Scene("none", [Layer("n", np.zeros((0, 3)), np.zeros((0, 3)), "shape")])},
])  # fmt: skip
def test_nothing_to_draw_is_a_value_error(tmp_path, scenes):
    with pytest.raises(ValueError, match="nothing to draw|no scenes"):
        render_stills(scenes, tmp_path)
    assert not list(tmp_path.iterdir())


def test_triangles_outside_the_vertices_are_a_value_error(tmp_path):
    vertices, triangles = uv_sphere()
    bad = Layer("surface", vertices, uniform(SURFACE_RGB, len(vertices)), "surface", triangles=triangles + 1)
    with pytest.raises(ValueError, match="triangle indices outside its"):
        render_stills({"mesh": Scene("ball", [bad])}, tmp_path)


def test_render_scene_with_nothing_to_draw_is_a_value_error():
    with pytest.raises(ValueError, match="nothing to draw"):
        render_scene(Scene("empty"))


def _sleeps(scenes, size):
    time.sleep(30)


def _aborts(scenes, size):
    faulthandler.disable()  # no traceback dump from the child in the test log
    os.abort()


def _raises(scenes, size):
    raise ValueError("no GL context\nsecond line")


@pytest.mark.parametrize(("child", "message"), [
    (_sleeps, r"took longer than 0\.5 s"),
    (_aborts, r"crashed \(SIGABRT\)"),
    (_raises, r"failed \(ValueError: no GL context second line\)"),
])  # fmt: skip
def test_child_failures_are_one_line_render_errors(tmp_path, monkeypatch, child, message):
    monkeypatch.setattr(render, "_render_all", child)
    with pytest.raises(RenderError, match=message) as caught:
        render_stills({"still": token_scene()}, tmp_path, size=SIZE, timeout_s=0.5)
    text = str(caught.value)
    assert text.startswith("Open3D rendering") and "\n" not in text
    assert not list(tmp_path.iterdir()), "no PNG is written for a failed batch"
