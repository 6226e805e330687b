"""Creating output files safely in a folder other people may write to.

Every file imnkit writes goes through here (the video writers too). A temporary file is made beside
the output, then renamed onto it, so a reader never sees half a file and a failed run leaves nothing:

- its name is random (``.{output name}.{16 hex digits}.tmp``): nobody can prepare a file or a link
  there in advance;
- it is created exclusively and never through a link (``O_CREAT | O_EXCL | O_NOFOLLOW``): a name
  somebody took anyway makes a fresh try, never a write into their file;
- its mode is the output's from the start, set on the open descriptor (``fchmod``), whatever the
  umask: :data:`PRIVATE` (0600) for whatever holds a key or the original faces (auxes, bundles,
  previews, recovered photos), :data:`SHAREABLE` (0644) for the masked photo only;
- it is written, flushed to disk (``fsync``), then renamed onto the output (``os.replace``);
- an output name that is a symbolic link is refused (:class:`~imnkit.errors.OutputError`): imnkit
  never writes where a link points.

Three ways in: :func:`write_file` (bytes at hand), :func:`open_output` (a stream written piece by
piece), :func:`output_path` (a library that wants a path, e.g. PyAV: it writes in a private folder,
mode 0700, made beside the output). :func:`write_all` writes several outputs all or none.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from .errors import OutputError

#: Mode of a file that holds a key or original faces: its owner alone reads it.
PRIVATE = 0o600
#: Mode of the masked photo, the one file meant to be shared.
SHAREABLE = 0o644

_TRIES = 16  # random 64-bit names: a collision means somebody is guessing, not bad luck
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def refuse_symlink(path: str | os.PathLike) -> None:
    """Raise OutputError when ``path`` is a symbolic link (dangling or not)."""
    if os.path.islink(path):
        raise OutputError(f"{path}: is a symbolic link; imnkit never writes through one",
                          hint="remove the link or choose another output name")


def temp_name(path: Path) -> Path:
    """A fresh random temporary name beside ``path`` (the Ray engine's sweep knows the pattern)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


def create_temp(path: str | os.PathLike, mode: int = PRIVATE) -> tuple[int, Path]:
    """Create an empty temporary file beside ``path`` with mode ``mode``: ``(descriptor, its path)``.

    The caller writes through the descriptor and then calls :func:`publish` (or unlinks the file).
    The output's folder is made if missing.

    Raises:
        OutputError: the folder cannot be made or written.
    """
    path = Path(path)
    _make_folder(path)
    for _ in range(_TRIES):
        tmp = temp_name(path)
        try:
            fd = os.open(tmp, _CREATE, PRIVATE)  # the umask can only narrow this; fchmod sets it exactly
        except FileExistsError:
            continue
        except OSError as err:
            raise _cannot_write(path, err) from None
        try:
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd, tmp
    raise _cannot_write(path, FileExistsError(f"no free temporary name after {_TRIES} tries"))


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot_write(path, err) from None


def _cannot_write(path: Path, err: OSError) -> OutputError:
    folder = path.parent if str(path.parent) else Path(".")
    return OutputError(f"{folder}: cannot write here ({err.strerror or err}); nothing was kept")


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data``, flush it to disk and close ``fd``."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_written(tmp: str | os.PathLike, output: str | os.PathLike, mode: int) -> None:
    """Check that a writer left a regular file at ``tmp`` (not a link), give it ``mode`` again, sync it.

    For files another library wrote by name (PyAV): OutputError naming ``output`` when there is none.
    """
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise OutputError(f"{output}: nothing was written") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputError(f"{output}: the writer made something other than a file")
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file onto ``path``, refusing a symbolic link there.

    Raises:
        OutputError: ``path`` is a symbolic link (``tmp`` is left for the caller to remove).
        OSError: the rename failed.
    """
    refuse_symlink(path)
    os.replace(tmp, path)


def write_file(path: str | os.PathLike, data: bytes, *, mode: int = PRIVATE) -> Path:
    """Write ``data`` to ``path`` atomically with mode ``mode`` (see the module docstring).

    Raises:
        OutputError: ``path`` is a symbolic link, or its folder cannot be written.
        OSError: the write failed (no temporary file is left).
    """
    return write_all([(Path(path), data, mode)])[0]


def write_all(blobs: Sequence[tuple[str | os.PathLike, bytes, int]]) -> list[Path]:
    """Write every ``(path, data, mode)``, all or none: every temporary file first, then every rename.

    On failure the temporary files and the outputs already renamed are removed.

    Raises:
        OutputError: an output name is a symbolic link (checked before anything is written), or a
            folder cannot be written.
        OSError: a write failed (nothing is kept).
    """
    paths = [Path(p) for p, _, _ in blobs]
    for path in paths:
        refuse_symlink(path)
    temps: list[Path] = []
    written: list[Path] = []
    try:
        for path, (_, data, mode) in zip(paths, blobs):
            fd, tmp = create_temp(path, mode)
            temps.append(tmp)
            _write_fd(fd, data)
        for tmp, path in zip(temps, paths):
            publish(tmp, path)
            written.append(path)
    except BaseException:
        # No temporary file (they may hold face pixels or a key) and no partial set of outputs stays.
        for p in temps + written:
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        raise
    return written


@contextlib.contextmanager
def open_output(path: str | os.PathLike, *, mode: int = PRIVATE) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through; on leaving the block it is synced and renamed into place.

    If the block raises, the temporary file is removed and ``path`` is untouched.

    Raises:
        OutputError: ``path`` is a symbolic link, or its folder cannot be written.
        OSError: the write failed.
    """
    path = Path(path)
    refuse_symlink(path)
    fd, tmp = create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def output_path(path: str | os.PathLike, *, mode: int = PRIVATE) -> Iterator[Path]:
    """A path for a library that writes by name (PyAV, safetensors); renamed onto ``path`` after the block.

    The path lies in a private folder (mode 0700, random name ``.{output name}.{hex}.tmpdir``) made
    beside ``path``, so nobody else can put anything at it; it has the output's file name (PyAV reads
    the format from the suffix) and exists, empty, with mode ``mode`` when the block starts. After
    the block the file gets mode ``mode`` again (whatever the library did), is synced and renamed
    onto ``path``; the folder is removed in every case.

    Raises:
        OutputError: ``path`` is a symbolic link, its folder cannot be written, or the block left no
            regular file at the path.
        OSError: the write failed.
    """
    path = Path(path)
    refuse_symlink(path)
    _make_folder(path)
    for _ in range(_TRIES):
        folder = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmpdir")
        try:
            os.mkdir(folder, 0o700)
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise _cannot_write(path, err) from None
    else:
        raise _cannot_write(path, FileExistsError(f"no free temporary name after {_TRIES} tries"))
    try:
        os.chmod(folder, 0o700)  # mkdir's mode is narrowed by the umask only; make it exact
        inner = folder / path.name
        fd = os.open(inner, _CREATE, PRIVATE)
        os.fchmod(fd, mode)
        os.close(fd)
        yield inner
        seal_written(inner, path, mode)
        publish(inner, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
