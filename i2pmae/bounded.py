"""Run untrusted work in a child process with a memory limit and a wall-clock timeout.

Reading an uploaded file, analysing it and rendering it with Open3D are the places where a hostile or
unlucky input can make a library allocate without bound, loop for minutes, or crash in C code. The readers
bound what they know about (:class:`~i2pmae.io.checks.ReadBudget`); :func:`run_bounded` bounds the rest:
the work runs in a forked child whose address space is capped (``resource.setrlimit(RLIMIT_AS)``) and which
is killed when it runs past its timeout. Whatever goes wrong costs that one child, and the caller gets a
:class:`BoundedRunError` that says what happened, while the server and its other users go on.

Fork, not spawn: the child starts in a few milliseconds with the parent's loaded models (copy-on-write),
so nothing is imported or loaded twice. The parent's OpenMP thread pool does not survive a fork (a
parallel region in the child would wait forever for it), so the child runs PyTorch on one thread.
Where ``fork`` does not exist (Windows), the work runs in the calling process, unbounded.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

GIB = 2**30
DEFAULT_MEMORY_GIB = 3.0  # address space the child may add to what it starts with (the parent's copy)
DEFAULT_TIMEOUT_S = 30.0
MAX_CHILDREN = 2  # children alive at once: bounds the memory many simultaneous requests can take
_KILL_GRACE_S = 5.0  # how long to wait for a killed child to be reaped
_ALLOCATION_FAILURES = ("can't allocate memory", "Unable to allocate", "bad_alloc", "out of memory")

_children = threading.BoundedSemaphore(MAX_CHILDREN)


class BoundedRunError(RuntimeError):
    """The child ran out of memory, ran past its timeout, or crashed; the message says which."""


def can_isolate() -> bool:
    """Whether :func:`run_bounded` runs work in a child (needs ``fork``)."""
    return "fork" in multiprocessing.get_all_start_methods()


def run_bounded(
    fn: Callable[..., T],
    /,
    *args: Any,
    memory_gib: float = DEFAULT_MEMORY_GIB,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str = "the task",
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` in a forked child with ``memory_gib`` GiB of address space above its start
    and ``timeout_s`` seconds; its result (which must pickle) is returned here.

    An exception ``fn`` raises is raised here as it was (a :class:`~i2pmae.io.ShapeError` stays one).

    Raises:
        BoundedRunError: the child ran out of memory, ran past ``timeout_s`` (it is killed), or died
            (a signal such as SIGSEGV); the message starts with ``what``.
    """
    if not can_isolate():
        return fn(*args, **kwargs)
    context = multiprocessing.get_context("fork")
    with _children:
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_child_main, args=(sender, fn, args, kwargs, memory_gib), daemon=True)
        child.start()
        sender.close()  # the child holds the only writer: EOF here means it is gone
        try:
            payload = _receive(receiver, child, timeout_s, what)
        finally:
            receiver.close()
            _reap(child)
    ok, value = pickle.loads(payload)
    if ok:
        return value
    if isinstance(value, MemoryError):
        raise BoundedRunError(f"{what} ran out of memory (the limit is {memory_gib:g} GiB)") from None
    raise value


def _receive(receiver, child, timeout_s: float, what: str) -> bytes:
    if not receiver.poll(timeout_s):
        child.kill()
        raise BoundedRunError(f"{what} took longer than {timeout_s:g} s and was stopped")
    try:
        return receiver.recv_bytes()
    except EOFError:
        child.join(_KILL_GRACE_S)
        raise BoundedRunError(f"{what} {_death(child.exitcode)}") from None


def _death(exitcode: int | None) -> str:
    """How a child that sent nothing ended, in words."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        if -exitcode == signal.SIGKILL:
            return f"was killed ({name}; the system may have run out of memory)"
        return f"crashed ({name})"
    return f"ended without a result (exit code {exitcode})"


def _reap(child) -> None:
    child.join(_KILL_GRACE_S)
    if child.is_alive():
        child.kill()
        child.join(_KILL_GRACE_S)
    child.close()


def _child_main(sender, fn: Callable, args: tuple, kwargs: dict, memory_gib: float) -> None:
    """In the child: cap the address space, run one thread, send ``(ok, result or exception)``."""
    _limit_address_space(memory_gib)
    if "torch" in sys.modules:  # the parent's OpenMP pool is gone: more threads would wait forever
        sys.modules["torch"].set_num_threads(1)
    try:
        outcome = (True, fn(*args, **kwargs))
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the parent
        outcome = (False, _as_memory_error(err))
    try:
        payload = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as err:  # noqa: BLE001 - an unpicklable result or exception
        payload = pickle.dumps((False, BoundedRunError(f"the result could not be sent back ({err})")))
    sender.send_bytes(payload)
    sender.close()


def _as_memory_error(err: BaseException) -> BaseException:
    """Allocation failures from numpy or PyTorch (RuntimeError) as MemoryError; others unchanged."""
    if isinstance(err, MemoryError) or any(text in str(err) for text in _ALLOCATION_FAILURES):
        return MemoryError(str(err))
    return err


def _limit_address_space(memory_gib: float) -> None:
    """RLIMIT_AS = the address space the child starts with + ``memory_gib`` (Linux reports the former)."""
    start = _address_space_bytes()
    if start is None:
        return
    limit = start + int(memory_gib * GIB)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space_bytes() -> int | None:
    """This process's virtual memory size (VmSize), or None where /proc does not say."""
    try:
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
