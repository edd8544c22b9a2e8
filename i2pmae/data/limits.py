"""The memory limit on one data set: array sizes are read from file headers before any data is read.

A compressed ``.npz`` member, or a chunked HDF5 data set left at its fill value, can be a few kB on disk
and many GB once read. So each array reader first adds up the sizes the file declares (an ``.npy``
header's shape and dtype, an HDF5 data set's shape and dtype) in a :class:`SizeBudget`. Over the limit,
it raises a :class:`DatasetError` that names the limit, and nothing is read. The limit is the
``max_gib`` argument of :func:`~i2pmae.data.open_dataset` and :func:`~i2pmae.data.check_dataset`
(``--max-gib`` on the command line); the default is :data:`MAX_GIB`.
"""

from __future__ import annotations

import math
from typing import IO

import numpy as np

from .datasets import DatasetError

MAX_GIB = 2.0  # default limit per data set: ModelNet40 h5 train is 0.23 GiB, ScanObjectNN PB_T50_RS 0.26 GiB
GIB = 2**30
NPY_VERSION_1 = (1, 0)  # later .npy versions only widen the header-length field
LIMIT_HINT = "raise the limit with max_gib= (--max-gib on the command line) if this machine has the memory"


def check_max_gib(max_gib: float) -> float:
    """``max_gib`` as a float, if it is a positive finite number of GiB."""
    if isinstance(max_gib, bool) or not isinstance(max_gib, (int, float)) or not 0 < max_gib < math.inf:
        raise DatasetError(f"max_gib must be a positive number of GiB, got {max_gib!r}")
    return float(max_gib)


def _size(nbytes: int) -> str:
    return f"{nbytes / GIB:.3g} GiB" if nbytes >= GIB // 10 else f"{nbytes / 2**20:.3g} MiB"


class SizeBudget:
    """Bytes the arrays of one data set may take once read; :meth:`claim` refuses past ``max_gib``."""

    def __init__(self, max_gib: float = MAX_GIB) -> None:
        self.max_gib = check_max_gib(max_gib)
        self.used = 0

    def claim(self, nbytes: int, source: str) -> None:
        """Count ``nbytes`` more; raise a DatasetError when the total passes the limit."""
        self.used += int(nbytes)
        if self.used > self.max_gib * GIB:
            raise DatasetError(
                f"{source}: its arrays take {_size(self.used)} once read, over the limit of "
                f"{self.max_gib:g} GiB per data set, so nothing was read; {LIMIT_HINT}"
            )


def npy_nbytes(handle: IO[bytes]) -> int | None:
    """Bytes of the array an ``.npy`` stream declares (shape x item size), read from its header only.

    None when the stream does not start with the ``.npy`` magic. A malformed header raises ValueError.
    """
    try:
        version = np.lib.format.read_magic(handle)
    except ValueError:
        return None
    fmt = np.lib.format
    read_header = fmt.read_array_header_1_0 if version == NPY_VERSION_1 else fmt.read_array_header_2_0
    shape, _, dtype = read_header(handle)
    return math.prod(shape) * dtype.itemsize


def npz_nbytes(archive: np.lib.npyio.NpzFile, keys: list[str]) -> int:
    """Bytes the arrays ``keys`` of an open ``.npz`` take once read, from their headers only.

    A member that is not an ``.npy`` (np.load returns its raw bytes) counts its declared uncompressed size,
    which bounds what ``zipfile`` returns for it.
    """
    members = set(archive.zip.namelist())
    total = 0
    for key in keys:
        member = f"{key}.npy" if f"{key}.npy" in members else key
        with archive.zip.open(member) as handle:
            declared = npy_nbytes(handle)
        total += archive.zip.getinfo(member).file_size if declared is None else declared
    return total
