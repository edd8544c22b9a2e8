"""`i2pmae view`: states, scenes and actions without a window, the one-line errors, and the WebRTC page."""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from helpers import SMALL_MODEL, StandInTeacher, _free_port, make_clouds, save_tiny_checkpoint

from i2pmae import viewer
from i2pmae.cli import main
from i2pmae.config import I2PMAEConfig
from i2pmae.model import I2PMAE
from i2pmae.render import srgb_to_linear
from i2pmae.viewer import (
    NEW_SEED_ACTION,
    TAU_PRESETS,
    ViewerSession,
    ViewerState,
    check_display,
    prepare_shape,
    redraw_plan,
    viewer_actions,
)

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIRPLANE = os.path.join(REPO_ROOT, "assets", "airplane.ply")
MASK_GROUPS = {"random", "guided"}
RECONSTRUCTION_GROUPS = {"reconstruction random", "reconstruction guided"}
SERVER_WAIT_S = 30.0  # the page must answer within this (loading the teacher and model included)
STOP_GRACE_S = 10.0


@pytest.fixture(scope="module")
def shape() -> viewer.ViewerShape:
    """A synthetic cloud analysed by the small model, which also reconstructs it (random weights)."""
    model = I2PMAE(I2PMAEConfig(**SMALL_MODEL)).eval()
    points = make_clouds(1, SMALL_MODEL["num_points"])[0].numpy()  # (N, 3)
    return prepare_shape("cloud", points, StandInTeacher(), model=model, explorer=model)


def groups_of(scene) -> dict[str, list]:
    out: dict[str, list] = {}
    for layer in scene.layers:
        out.setdefault(layer.group, []).append(layer)
    return out


def changed_groups(old, new) -> set[str]:
    removed, added = redraw_plan(old, new)
    by_name = {layer.name: layer for layer in old.layers}
    return {by_name[name].group for name in removed} | {layer.group for layer in added}


# ------------------------------------------------------------------------------------------------ core
def test_scene_has_every_layer_in_its_group(shape):
    scene = ViewerSession(shape, ViewerState(level=1), surfaces=False).scene()
    groups = groups_of(scene)
    assert set(groups) == {"shape", "saliency", *MASK_GROUPS, *RECONSTRUCTION_GROUPS}
    assert len(groups["saliency"][0].points) == shape.tokens[1]  # the state's level
    for kind in MASK_GROUPS:  # visible + masked tokens of the level
        assert sum(len(layer.points) for layer in groups[kind]) == shape.tokens[1]
    shown = {layer.group for layer in scene.layers if layer.shown}
    assert shown == {"shape", "guided"}


def test_new_seed_redraws_masks_but_keeps_shape_and_saliency(shape):
    session = ViewerSession(shape, surfaces=False)
    before = session.scene()
    after = session.apply(viewer_actions(shape.tokens)[NEW_SEED_ACTION])
    assert session.state.seed == 1
    changed = changed_groups(before, after)
    assert "shape" not in changed and "saliency" not in changed
    assert changed & MASK_GROUPS and changed & RECONSTRUCTION_GROUPS
    removed, added = redraw_plan(before, after)
    assert len(removed) == len(added)  # every redrawn layer comes back


def test_tau_preset_changes_only_the_guided_side(shape):
    # the stand-in teacher's saliency is nearly flat (spread ~1e-4): start greedy so that tau = 1 differs
    session = ViewerSession(shape, ViewerState(tau=1e-7), surfaces=False)
    before = session.scene()
    after = session.apply(viewer_actions(shape.tokens)["tau: paper (tau = 1)"])
    assert session.state.tau == TAU_PRESETS["paper (tau = 1)"] == 1.0
    changed = changed_groups(before, after)
    assert "guided" in changed and "reconstruction guided" in changed
    assert not changed & {"shape", "saliency", "random", "reconstruction random"}  # same seed, same random


def test_level_action_redraws_tokens_not_reconstructions(shape):
    session = ViewerSession(shape, ViewerState(level=0), surfaces=False)
    before = session.scene()
    after = session.apply(viewer_actions(shape.tokens)[f"level 2: {shape.tokens[2]} tokens"])
    assert session.state.level == 2
    assert changed_groups(before, after) == {"saliency", *MASK_GROUPS}
    assert len(groups_of(after)["saliency"][0].points) == shape.tokens[2]


def test_actions_and_bad_states(shape):
    names = list(viewer_actions(shape.tokens))
    assert names[0] == NEW_SEED_ACTION and len(names) == 1 + len(TAU_PRESETS) + len(shape.tokens)
    assert all(name.isascii() for name in names)  # Open3D's default font has no Greek glyphs
    session = ViewerSession(shape, surfaces=False)
    with pytest.raises(ValueError, match="level must be 0 to 2"):
        session.apply(lambda s: ViewerState(level=3))
    with pytest.raises(ValueError, match="tau must be > 0"):
        ViewerSession(shape, ViewerState(tau=0.0))


def test_surfaces_per_reconstruction_hidden_at_first(shape):
    if importlib.util.find_spec("i2pmae.surface") is None or importlib.util.find_spec("open3d") is None:
        pytest.skip("i2pmae.surface or open3d is not available")
    session = ViewerSession(shape)
    scene = session.scene()
    surfaces = [layer for layer in scene.layers if layer.group.startswith("surface")]
    assert {layer.group for layer in surfaces} == {"surface random", "surface guided"}
    assert all(layer.is_mesh and not layer.shown for layer in surfaces)
    level_change = session.apply(viewer_actions(shape.tokens)[f"level 0: {shape.tokens[0]} tokens"])
    assert "surface random" not in changed_groups(scene, level_change)  # cached per seed, tau and ratio
    reseeded = session.apply(viewer_actions(shape.tokens)[NEW_SEED_ACTION])
    assert {"surface random", "surface guided"} <= changed_groups(level_change, reseeded)


def test_layer_key_and_colours():
    assert viewer.layer_key("random mask: visible tokens (13)") == "random mask: visible tokens"
    assert viewer.layer_key("shape") == "shape"
    linear = srgb_to_linear(np.array([[0.0, 0.5, 1.0]]))
    assert linear[0, 0] == 0.0 and linear[0, 2] == 1.0 and 0.2 < linear[0, 1] < 0.23


# ------------------------------------------------------------------------------------------------ display
@pytest.mark.parametrize("environ, webrtc, fails", [
    ({}, False, True), ({"DISPLAY": ":0"}, False, False), ({"WAYLAND_DISPLAY": "wayland-0"}, False, False),
    ({}, True, False),
])  # fmt: skip
def test_check_display(environ, webrtc, fails):
    if fails:
        with pytest.raises(ValueError, match="--webrtc"):
            check_display(webrtc, environ, platform="linux")
    else:
        check_display(webrtc, environ, platform="linux")
    check_display(False, {}, platform="darwin")  # macOS and Windows always have a window system


def test_no_display_fails_fast_before_loading(monkeypatch, capsys):
    from i2pmae import teachers

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    loads = []
    monkeypatch.setattr(teachers, "load_teacher", lambda *a, **k: loads.append(a))
    assert main(["view", AIRPLANE]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--webrtc" in err[0] and err[0].startswith("i2pmae view: error: no display")
    assert loads == []


@pytest.mark.parametrize("option, message", [
    (["--level", "7"], "--level must be 0 to 2"), (["--tau", "0"], "--tau must be > 0"),
    (["--port", "0"], "--port must be 1 to 65535"), (["--mask-ratio", "1"], "--mask-ratio must be in (0, 1)"),
])  # fmt: skip
def test_bad_arguments_are_one_line(option, message, capsys):
    assert main(["view", AIRPLANE, "--webrtc", *option]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


# ------------------------------------------------------------------------------------------------ WebRTC
def _webrtc_available() -> str:
    """'' when Open3D's GUI with WebRTC can be imported here, else why not."""
    try:
        import open3d as o3d

        o3d.visualization.webrtc_server.enable_webrtc  # noqa: B018
        o3d.visualization.O3DVisualizer  # noqa: B018
    except (ImportError, AttributeError) as err:
        return f"Open3D's WebRTC visualizer is not available: {err}"
    return ""


def _media_list(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/getMediaList", timeout=1) as response:
            return response.read().decode()
    except OSError:
        return ""


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses (hex, as /proc writes them) that listen on ``port``."""
    found = set()
    with open("/proc/net/tcp") as table:
        for row in table.readlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_webrtc_page_serves_the_window(tmp_path):
    if reason := _webrtc_available():
        pytest.skip(reason)
    port = _free_port()
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "i2pmae.cli", "view", AIRPLANE, "--webrtc", "--port", str(port),
           "--num-points", "1024", "--checkpoint", str(checkpoint), "--no-surfaces"]
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err_file:
        child = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        deadline, listed = time.monotonic() + SERVER_WAIT_S, ""
        while time.monotonic() < deadline and child.poll() is None and '"video"' not in listed:
            listed = _media_list(port)
            time.sleep(0.25)
        tail = err_path.read_text()[-2000:]
        if child.poll() is not None and "open3d" in tail.lower() and "gui" in tail.lower():
            pytest.skip(f"Open3D's GUI could not start here: {tail.strip().splitlines()[-1]}")
        assert '"video"' in listed, f"no WebRTC page within {SERVER_WAIT_S:g} s; stderr:\n{tail}"
        assert re.search(rf"serving at http://127\.0\.0\.1:{port}\b", tail)
        assert f"ssh -L {port}:127.0.0.1:{port}" in tail
        if sys.platform.startswith("linux"):
            assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(STOP_GRACE_S)
    assert child.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
