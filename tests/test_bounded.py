"""run_bounded: work in a forked child with a memory cap and a timeout; failures cost the child only."""

import faulthandler
import os
import signal
import time

import numpy as np
import pytest
import torch

from i2pmae.bounded import BoundedRunError, can_isolate, run_bounded
from i2pmae.io import ShapeError

pytestmark = pytest.mark.skipif(not can_isolate(), reason="needs fork (Linux, macOS)")


def _allocate(gib: float) -> int:
    block = np.ones(int(gib * 2**30), dtype=np.uint8)  # touched: really allocated
    return int(block[::4096].sum())


def _fail() -> None:
    raise ShapeError("bad.ply: a face refers to vertex 9")


def _segfault() -> None:
    faulthandler.disable()  # pytest's handler would print the child's stack to the log
    os.kill(os.getpid(), signal.SIGSEGV)


def _pid() -> int:
    return os.getpid()


def _matmul() -> float:
    a = torch.ones(400, 400)
    return float((a @ a)[0, 0])


def test_result_comes_back_from_another_process():
    assert run_bounded(_pid) != os.getpid()
    assert run_bounded(np.arange, 5).tolist() == [0, 1, 2, 3, 4]
    assert run_bounded(lambda a, *, b: a + b, 2, b=3) == 5  # a closure: fork needs no pickling of fn


def test_an_error_of_the_work_is_raised_as_it_was():
    with pytest.raises(ShapeError, match="a face refers to vertex 9"):
        run_bounded(_fail)


def test_memory_over_the_limit_costs_only_the_child():
    with pytest.raises(BoundedRunError, match=r"reading x ran out of memory \(the limit is 0.25 GiB\)"):
        run_bounded(_allocate, 1.0, memory_gib=0.25, what="reading x")
    assert run_bounded(_allocate, 0.01, memory_gib=0.25) == int(2**30 * 0.01 / 4096) + 1


def test_a_child_past_its_timeout_is_killed():
    start = time.perf_counter()
    with pytest.raises(BoundedRunError, match="took longer than 0.5 s and was stopped"):
        run_bounded(time.sleep, 60, timeout_s=0.5)
    assert time.perf_counter() - start < 10


def test_a_crash_in_c_code_is_reported_not_inherited():
    with pytest.raises(BoundedRunError, match=r"rendering crashed \(SIGSEGV\)"):
        run_bounded(_segfault, what="rendering")
    assert run_bounded(_pid) != os.getpid()  # and the next call works


def test_torch_runs_in_the_child_after_the_parent_used_its_thread_pool():
    torch.set_num_threads(2)
    a = torch.randn(300, 300)
    for _ in range(3):
        a @ a  # the parent's OpenMP pool is now running; a forked child must not wait for it
    assert run_bounded(_matmul, timeout_s=20) == 400.0
