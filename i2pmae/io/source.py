"""Getting a file's bytes: existence and size checks, one shape file out of a .gz / .bz2 / .zip (bounded, so a
decompression bomb is refused after at most :data:`~i2pmae.io.checks.MAX_FILE_BYTES` bytes), text decoding and
ASCII headers.

The file's bytes, and decompressed bytes piece by piece as they come, are claimed from the read's budget
(:func:`~i2pmae.io.checks.claim`), so an archive implying more than the memory limit stops there. Zip member
names are printed with control characters escaped (:func:`printable`), and a name that would leave the
folder it is extracted to (``../x.ply``, ``/x.ply``, ``..\\x.ply``, ``C:x.ply``) is refused. The buffers a
.gltf names are read from the same archive, or from its folder on disk (:class:`Companions`), by the same
rules."""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import posixpath
import re
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from . import checks
from .checks import ShapeError, check_size, claim

COMPRESSED_EXTENSIONS = (".zip", ".gz", ".bz2")
MAX_HEADER_LINES = 200  # PLY/PCD header lines read before a file is declared not to be one

_STREAMS: dict[str, Callable[[BinaryIO], BinaryIO]] = {
    ".gz": lambda stream: gzip.GzipFile(fileobj=stream),
    ".bz2": bz2.BZ2File,
}
_STREAM_NAMES = {".gz": "gzip", ".bz2": "bzip2"}
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_ZIP_JUNK_FOLDER = "__MACOSX"  # resource forks that macOS archivers add
_READ_CHUNK = 2**20  # decompressed bytes read, then claimed, at a time
_ZIP_ENTRY = b"PK\x01\x02"  # signature of a central directory entry: zipfile parses one Python object each
_ZIP_ENTRY_BYTES = 512  # memory of one parsed entry (ZipInfo, its name, the name index), rounded up
_MAX_ZIP_ENTRIES = 10_000  # a zip of one shape file and its materials; zipfile takes ~11 µs per entry
_DRIVE = re.compile(r"^[A-Za-z]:")  # a Windows drive letter
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # a scheme (http:, file:), two letters or more: not a drive


@dataclass(frozen=True)
class Source:
    """A shape file's content and the format to read it with."""

    suffix: str  # the format's extension, lower case with the dot (".ply"), inside any compression
    data: bytes
    path: Path | None  # the file on disk holding exactly ``data``; None when it was decompressed
    notes: tuple[str, ...] = ()
    # Reads a file this one refers to by a relative URI (a .gltf's buffers), from the zip archive both came
    # from or from the folder of a .gltf on disk; None: other files are never opened.
    companion: Companions | None = None


def open_source(path: Path, formats: Collection[str], *, siblings: bool = True) -> Source:
    """Check ``path`` and read it (decompressed when it is a .gz, .bz2 or .zip); errors omit the file name.

    ``siblings``: a .gltf on disk may read the buffer files it names from its folder (and the folders below).
    """
    suffix = path.suffix.lower()
    if suffix not in formats and suffix not in COMPRESSED_EXTENSIONS:
        found = f"'{path.suffix}'" if path.suffix else "no extension"
        raise ShapeError(
            f"unsupported file type ({found}); supported: {', '.join((*formats, *COMPRESSED_EXTENSIONS))}"
        )
    data = _read_file(path)
    if suffix == ".zip":
        return _zip_member(data, formats)
    if suffix in _STREAMS:
        inner = PurePosixPath(path.stem).suffix.lower()
        if inner not in formats:
            raise ShapeError(
                f"a {suffix} file must hold one shape file and be named after it, like model.ply{suffix} "
                f"(found '{inner or 'no extension'}' before '{suffix}'; supported: {', '.join(formats)})"
            )
        with _STREAMS[suffix](io.BytesIO(data)) as stream:
            return Source(inner, _read_bounded(stream, f"the {_STREAM_NAMES[suffix]} data"), None)
    companion = _FolderCompanions(path) if siblings and suffix == ".gltf" else None
    return Source(suffix, data, path, (), companion)


def _read_file(path: Path) -> bytes:
    """The file's bytes, after checking it exists, is not empty and is within MAX_FILE_BYTES."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ShapeError("not a file")
        if size == 0:
            raise ShapeError("the file is empty")
        check_size(size, "the file")
        claim(size, "the file")
        return path.read_bytes()
    except FileNotFoundError as err:
        raise ShapeError(f"no such file ({path})") from err
    except OSError as err:
        raise ShapeError(f"cannot read the file ({err.strerror or err})") from err


def _read_bounded(stream: BinaryIO, what: str) -> bytes:
    """Decompress at most MAX_FILE_BYTES + 1 bytes from ``stream``, claiming each piece before keeping it: a
    bomb is refused, never inflated."""
    limit = checks.MAX_FILE_BYTES
    out = io.BytesIO()  # grows in place; getvalue() hands over its buffer without a copy
    while chunk := _read_piece(stream, min(_READ_CHUNK, limit + 1 - out.tell()), what):
        claim(len(chunk), f"decompressing {what}")
        out.write(chunk)
    if out.tell() > limit:
        raise ShapeError(
            f"{what} is over {checks.format_size(limit)} once decompressed, the limit (MAX_FILE_BYTES)"
        )
    if not out.tell():
        raise ShapeError(f"{what} is empty")
    return out.getvalue()


def _read_piece(stream: BinaryIO, size: int, what: str) -> bytes:
    try:
        return stream.read(size)
    except _DECOMPRESS_ERRORS as err:
        raise ShapeError(f"{what} cannot be decompressed ({type(err).__name__}: {err})") from err
    except RuntimeError as err:  # zipfile: an encrypted member
        raise ShapeError(f"{what} cannot be decompressed ({err})") from err


def _zip_member(data: bytes, formats: Collection[str]) -> Source:
    """The one shape file inside a zip archive (other files, such as an OBJ's .mtl, are ignored)."""
    # Every entry zipfile parses starts with the signature: their count bounds the directory's size and time.
    entries = data.count(_ZIP_ENTRY)
    if entries > _MAX_ZIP_ENTRIES:
        raise ShapeError(f"the zip archive lists {entries:,} entries, over the limit of {_MAX_ZIP_ENTRIES:,}")
    claim(entries * _ZIP_ENTRY_BYTES, "the zip archive's directory")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _DECOMPRESS_ERRORS as err:
        raise ShapeError(f"not a zip archive ({err})") from err
    # In memory, the archive holds no OS resource: it stays open while a .gltf's buffers are read from it.
    unsafe = [i.filename for i in archive.infolist() if _is_unsafe(i.filename)]
    if unsafe:
        raise ShapeError(
            f"the zip archive holds a member with an unsafe name ('{printable(unsafe[0])}': "
            "it points outside the folder it would be extracted to)"
        )
    files = [i for i in archive.infolist() if not i.is_dir() and not _is_junk(i.filename)]
    shapes = [i for i in files if PurePosixPath(i.filename).suffix.lower() in formats]
    if len(shapes) != 1:
        names = ", ".join(printable(i.filename) for i in (shapes or files)[:5]) or "nothing"
        kind = f"{len(shapes)} shape files" if shapes else "no shape file"
        raise ShapeError(
            f"the zip archive holds {kind} ({names}); it must hold exactly one "
            f"(supported: {', '.join(formats)})"
        )
    info = shapes[0]
    name = printable(info.filename)
    check_size(info.file_size, f"'{name}' in the zip archive", "uncompressed")
    with archive.open(info) as member:
        content = _read_bounded(member, f"'{name}' in the zip archive")
    suffix = PurePosixPath(info.filename).suffix.lower()
    companion = _ZipCompanions(archive, info.filename) if suffix == ".gltf" else None
    notes = [f"read {name} from the zip archive"]
    if len(files) > 1 and companion is None:
        others = [printable(i.filename) for i in files if i is not info]
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        notes[0] += f" (ignored {len(others)} other file(s): {shown})"
    return Source(suffix, content, None, tuple(notes), companion)


class Companions(Protocol):
    """The files a .gltf names as its buffers, by relative URI: ``companions(uri)`` -> their bytes."""

    where: str  # where they are read from, for notes: "from the zip archive"

    def __call__(self, uri: str) -> bytes: ...


class _ZipCompanions:
    """The members of a zip archive that its .gltf refers to (Sketchfab's downloads keep scene.bin beside
    scene.gltf), each read bounded like the shape file, from the archive whose directory was checked (and
    claimed) when the .gltf was taken out of it."""

    where = "from the zip archive"

    def __init__(self, archive: zipfile.ZipFile, member: str) -> None:
        self.archive, self.folder = archive, posixpath.dirname(member)

    def __call__(self, uri: str) -> bytes:
        name = posixpath.normpath(posixpath.join(self.folder, urllib.parse.unquote(uri)))
        shown = printable(uri)[:80]
        if _is_unsafe(name):
            raise ShapeError(f"the glTF file refers to '{shown}', outside the zip archive")
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise ShapeError(f"the glTF file refers to '{shown}', which the zip archive lacks") from None
        check_size(info.file_size, f"'{shown}' in the zip archive", "uncompressed")
        try:
            with self.archive.open(info) as member:
                return _read_bounded(member, f"'{shown}' in the zip archive")
        except ShapeError:  # a ValueError too, but already one clear line (a limit, an empty member)
            raise
        except (*_DECOMPRESS_ERRORS, RuntimeError) as err:  # RuntimeError: an encrypted member
            raise ShapeError(f"'{shown}' in the zip archive cannot be read ({err})") from err


class _FolderCompanions:
    """The files beside a .gltf on disk that it names as buffers (the Khronos samples and most exporters
    write scene.gltf with scene.bin), read with the shape file's checks, only from its folder and the folders
    below it: no URL, absolute path, ``..`` or link leading out of it is followed."""

    where = "from its folder"

    def __init__(self, path: Path) -> None:
        self.folder = path.parent

    def __call__(self, uri: str) -> bytes:
        name = urllib.parse.unquote(uri)
        shown = printable(uri)[:80]
        if _URL.match(name) or _is_unsafe(name) or "\0" in name:
            raise ShapeError(f"the glTF file refers to '{shown}', outside its folder")
        path = self.folder / name
        try:
            inside = path.resolve().is_relative_to(self.folder.resolve())
        except (OSError, RuntimeError) as err:  # RuntimeError: a loop of links
            raise ShapeError(f"the glTF file refers to '{shown}', which cannot be opened ({err})") from err
        if not inside:
            raise ShapeError(f"the glTF file refers to '{shown}', a link leading outside its folder")
        if not path.exists():
            raise ShapeError(f"the glTF file refers to '{shown}', which is not in its folder")
        try:
            return _read_file(path)
        except ShapeError as err:
            raise ShapeError(f"the glTF file's buffer '{shown}': {err}") from err


def printable(name: str) -> str:
    """``name`` with its control and other non-printable characters escaped as repr writes them (a newline as
    ``\\n``, an ANSI escape as ``\\x1b``): safe to put in a one-line message or a note."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in name)


def _is_unsafe(name: str) -> bool:
    """An absolute path, a drive, or a ``..`` part, with either kind of slash: extracting it would write
    outside the target folder (zip slip)."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or bool(_DRIVE.match(name)) or ".." in parts


def _is_junk(name: str) -> bool:
    """Hidden files and folders, and macOS resource forks."""
    return any(part.startswith(".") or part == _ZIP_JUNK_FOLDER for part in PurePosixPath(name).parts)


def decode_text(data: bytes, kind: str) -> str:
    """UTF-8 text, or UTF-8 / UTF-16 with a byte-order mark (as Windows tools write it)."""
    codec = next((codec for bom, codec in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as err:
        raise ShapeError(f"not a text {kind} file (undecodable bytes at offset {err.start})") from err


def header_lines(data: bytes, end: Callable[[str], bool], kind: str) -> tuple[list[str], int]:
    """ASCII header lines up to the one where ``end(line)`` holds (included), and the offset of the data."""
    lines, offset = [], 0
    while len(lines) < MAX_HEADER_LINES:
        newline = data.find(b"\n", offset)
        if newline < 0:
            break
        try:
            line = data[offset:newline].decode("ascii").strip()
        except UnicodeDecodeError as err:
            raise ShapeError(f"not a {kind} file (binary data inside the header)") from err
        lines.append(line)
        offset = newline + 1
        if end(line):
            return lines, offset
    raise ShapeError(f"not a {kind} file, or its header is cut off (no end of header found)")
