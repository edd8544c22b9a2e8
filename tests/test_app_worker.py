"""The explorer reads and analyses uploads in a bounded worker: what a reader misses costs that worker only.

Each test makes the reader misbehave the way a hostile file the loader does not know could (allocate
without bound, hang, crash in C code) and checks that the page gets one readable error, that the server
process is unharmed, and that the next upload works.
"""

import faulthandler
import os
import signal
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from app import handlers, shapes
from i2pmae.bounded import can_isolate

pytestmark = [pytest.mark.skipif(not can_isolate(), reason="the bounded worker needs fork"),
              pytest.mark.usefixtures("fresh_app")]
ASSETS = Path(__file__).resolve().parent.parent / "assets"
GOOD = ASSETS / "chair_0002.off"


def _upload(tmp_path: Path, name: str = "hostile.ply") -> str:
    path = tmp_path / name
    path.write_bytes(GOOD.read_bytes())  # the caches start empty in every test
    return str(path)


def _misbehaving_reader(monkeypatch, behaviour):
    real = shapes.read_shape

    def reader(path, **kwargs):
        if Path(path).name.startswith("hostile"):
            behaviour()
        return real(path, **kwargs)

    monkeypatch.setattr(shapes, "read_shape", reader)


def _allocate_without_bound():
    blocks = []
    while True:
        blocks.append(np.ones(2**28, dtype=np.uint8))  # 256 MiB at a time, touched


def _crash():
    faulthandler.disable()
    os.kill(os.getpid(), signal.SIGSEGV)


def _explore_error(path: str) -> str:
    with pytest.raises(gr.Error) as caught:
        handlers.explore(path, num_points=1024)
    return caught.value.message


def test_memory_a_reader_did_not_foresee_costs_one_worker(monkeypatch, tmp_path):
    monkeypatch.setattr(shapes, "WORKER_MEMORY_GIB", 0.5)
    _misbehaving_reader(monkeypatch, _allocate_without_bound)
    message = _explore_error(_upload(tmp_path))
    assert message == ("hostile.ply: reading the file ran out of memory (the limit is 0.5 GiB); "
                       "the file was not used")
    assert handlers.explore(str(GOOD), num_points=1024).summary.startswith("**chair_0002.off**")


def test_a_reader_that_hangs_is_stopped_at_the_timeout(monkeypatch, tmp_path):
    monkeypatch.setattr(shapes, "WORKER_TIMEOUT_S", 1.0)
    _misbehaving_reader(monkeypatch, lambda: time.sleep(120))
    start = time.perf_counter()
    message = _explore_error(_upload(tmp_path))
    assert message == ("hostile.ply: reading the file took longer than 1 s and was stopped; "
                       "the file was not used")
    assert time.perf_counter() - start < 30
    assert handlers.explore(str(GOOD), num_points=1024).summary.startswith("**chair_0002.off**")


def test_a_crash_in_a_reader_leaves_the_server_running(monkeypatch, tmp_path):
    _misbehaving_reader(monkeypatch, _crash)
    assert _explore_error(_upload(tmp_path)) == (
        "hostile.ply: reading the file crashed (SIGSEGV); the file was not used")
    assert handlers.explore(str(GOOD), num_points=1024).summary.startswith("**chair_0002.off**")


def test_the_loaders_own_errors_pass_through_unchanged(tmp_path):
    path = tmp_path / "junk.ply"
    path.write_bytes(b"not a ply file at all\n")
    assert _explore_error(str(path)).startswith("junk.ply: not a PLY file")


def test_the_results_are_the_same_with_and_without_the_worker(monkeypatch):
    isolated = shapes.analyse(str(GOOD), 1024, 0, handlers.DEFAULT_TEACHER)
    shapes.clear_caches()
    monkeypatch.setattr(shapes, "ISOLATED", False)
    local = shapes.analyse(str(GOOD), 1024, 0, handlers.DEFAULT_TEACHER)
    assert np.array_equal(isolated.shape.points, local.shape.points)
    assert isolated.analysis.hierarchy.centers[-1].equal(local.analysis.hierarchy.centers[-1])
    for worker, here in zip(isolated.analysis.token_saliency, local.analysis.token_saliency, strict=True):
        assert torch.allclose(worker, here, rtol=1e-5, atol=1e-9)  # one thread there, maybe more here
