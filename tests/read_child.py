"""Read shape files in this fresh interpreter and print, per file, one JSON line: the outcome, the seconds and
the growth of the peak resident memory during the read. Used by the hostile-file tests (through
``helpers.read_in_child``) and by ``benchmarks/bench_hostile.py``, also on an older checkout.

    python tests/read_child.py MAX_GIB CAP_GIB PATH [PATH ...]

The peak is VmHWM, reset right before each read through /proc/self/clear_refs (Linux): ru_maxrss cannot be
used, since a child started by subprocess carries its parent's peak in it. The address space is capped at
CAP_GIB, so that a runaway read stops there instead of taking the machine. A read_shape without
``max_gib`` (an older checkout) is called without it.
"""

import gc
import inspect
import json
import resource
import sys
import time

GIB = 2**30


def status(key: str) -> int:
    """A /proc/self/status memory line, in bytes."""
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(key))


def main() -> None:
    max_gib, cap_gib, paths = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    cap = int(cap_gib * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import trimesh  # noqa: F401  (imported by several readers: not part of any one read)

    from i2pmae.io import read_shape

    kwargs = {"max_gib": max_gib} if "max_gib" in inspect.signature(read_shape).parameters else {}
    for path in paths:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # the peak (VmHWM) restarts at the current resident memory
        before, start = status("VmRSS:"), time.perf_counter()
        try:
            shape = read_shape(path, **kwargs)
            faces = 0 if shape.faces is None else len(shape.faces)
            outcome = f"read: {len(shape.points):,} points, {faces:,} faces"
        except Exception as err:  # noqa: BLE001 - the outcome, whatever it is, is what is measured
            outcome = f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - start
        print(json.dumps({"path": path, "outcome": outcome, "seconds": seconds,
                          "growth": status("VmHWM:") - before}), flush=True)


if __name__ == "__main__":
    main()
