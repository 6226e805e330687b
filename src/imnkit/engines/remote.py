"""URLs as inputs and outputs of ``imnkit run --engine ray``: ``s3://``, ``gs://``, ``file://`` and any
scheme that fsspec resolves when its package is installed.

A URL is opened with ``pyarrow.fs.FileSystem.from_uri`` (S3, GCS, local, HDFS are built into pyarrow),
and, for a scheme pyarrow does not know, with fsspec wrapped as a pyarrow filesystem, so that the rest of
the engine and Ray's ``read_binary_files(filesystem=...)`` see one interface. Credentials are the
filesystem's own business: pyarrow and fsspec read them from the environment (``AWS_*``,
``GOOGLE_APPLICATION_CREDENTIALS``, instance roles ...) on every process that opens the URL.

A file or folder on such a filesystem is a :class:`Url`: enough of ``Path``'s interface (``name``,
``stem``, ``suffix``, ``parent``, ``/``) for the recipe's output names, and ``str()`` gives the URL back.

Writes are atomic per object: on an object store (S3, GCS, Azure ...) an object appears whole when its
single upload completes, so each output is one ``open_output_stream`` written in one call; on a
filesystem that renames (HDFS, SFTP) a hidden temporary file is moved into place; on this machine's
disk (``file://``) outputs go through :mod:`imnkit.safefile`, as local paths do: each temporary file
is created under a random name, exclusively, with the output's mode (0600 for auxes and bundles).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Union

from ..errors import InputError, OutputError, UsageError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARS = "*?["
# Filesystems (pyarrow type names, fsspec protocols) whose rename is atomic: outputs go through a
# temporary file there. On any other filesystem (object stores) one upload is the atomic unit.
_RENAMING = {"local", "hdfs", "file", "sftp", "ssh"}
# This machine's own disk (pyarrow's and fsspec's names): written through imnkit.safefile.
_LOCAL = {"local", "file"}


def is_url(text: str | os.PathLike | None) -> bool:
    """True for ``scheme://...`` (``s3://b/k``, ``file:///x``); False for local paths and None."""
    return isinstance(text, str) and bool(_URL.match(text))


@dataclass(frozen=True)
class Url:
    """A file or folder on a filesystem reached by URL (see the module docstring).

    ``path`` is the filesystem's own path (``bucket/key`` for S3, ``/abs/path`` for ``file://``);
    ``fs`` is the pyarrow filesystem that reaches it (it travels to Ray's workers, which read the
    credentials from their own environment).
    """

    scheme: str
    path: str
    fs: Any = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix

    @property
    def parent(self) -> Url:
        return Url(self.scheme, posixpath.dirname(self.path.rstrip("/")) or self.path, self.fs)

    def __truediv__(self, other: str | os.PathLike) -> Url:
        parts = [p for p in PurePosixPath(str(other)).parts if p not in (".", "/")]
        return Url(self.scheme, "/".join([self.path.rstrip("/"), *parts]) if parts else self.path, self.fs)

    @property
    def renames(self) -> bool:
        """Whether this filesystem renames atomically (else it is an object store: one put per object)."""
        return filesystem_kind(self.fs) in _RENAMING


AnyPath = Union[Path, Url]


def filesystem_kind(fs: Any) -> str:
    """pyarrow's type name (``s3``, ``gcs``, ``local``), or the fsspec protocol behind a wrapped one."""
    name = fs.type_name
    if name.startswith("py::fsspec+"):
        handler = getattr(fs, "handler", None)
        protocol = getattr(getattr(handler, "fs", None), "protocol", "")
        return protocol[0] if isinstance(protocol, (tuple, list)) else str(protocol)
    return name


def open_url(url: str) -> Url:
    """Open ``url``'s filesystem: pyarrow's own, else fsspec's wrapped for pyarrow.

    Raises:
        UsageError: pyarrow is missing, the scheme is unknown, or its filesystem package is not
            installed (the message names what to ``pip install``), or the URL is malformed.
    """
    scheme = url.split("://", 1)[0].lower()
    try:
        import pyarrow.fs as pafs
    except ImportError:
        raise UsageError(f"{scheme}:// URLs need pyarrow, which is not installed: "
                         'pip install "imnkit[ray]"') from None
    try:
        fs, path = pafs.FileSystem.from_uri(url)
        return Url(scheme, path, fs)
    except (ValueError, OSError) as err:  # ArrowInvalid is a ValueError
        if "Unrecognized filesystem type" not in str(err):
            # e.g. HDFS without a JVM, or a malformed URL (pyarrow may quote it: keys in it are hidden)
            reason = _first_line(err).replace(_userinfo(url), "***") if _userinfo(url) else _first_line(err)
            raise UsageError(f"{scheme}:// URL: the filesystem cannot be opened ({reason})") from None
    return _open_with_fsspec(url, scheme)


def _userinfo(url: str) -> str:
    """The ``user:password`` of ``scheme://user:password@host/...``, or ''."""
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    return netloc.rsplit("@", 1)[0] if "@" in netloc else ""


def _open_with_fsspec(url: str, scheme: str) -> Url:
    try:
        import fsspec
        from fsspec.registry import known_implementations
        from pyarrow.fs import FSSpecHandler, PyFileSystem
    except ImportError:
        raise UsageError(f"{scheme}:// is not a scheme pyarrow knows, and fsspec is not installed: "
                         "pip install fsspec") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError:
        package = known_implementations.get(scheme, {}).get("class", scheme).split(".")[0]
        raise UsageError(f"{scheme}:// URLs need the filesystem package {package}, which is not installed: "
                         f"pip install {package}") from None
    except ValueError:
        raise UsageError(f"{scheme}:// is not a scheme pyarrow or fsspec knows (s3://, gs://, file:// ...)") from None
    return Url(scheme, path, PyFileSystem(FSSpecHandler(fs)))


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def as_place(text: str | os.PathLike | None) -> AnyPath | None:
    """An output location from the command line: None, a local Path, or an opened Url."""
    if text is None:
        return None
    return open_url(text) if is_url(text) else Path(text)


# -- inputs --------------------------------------------------------------------------------------
def expand_urls(items: list[str], suffixes: tuple[str, ...]) -> tuple[list[Url], list[Url]]:
    """URL items -> (files, mirror roots), as ``recipe.expand_inputs`` does for local paths.

    A folder or prefix is listed recursively (files with one of ``suffixes``, sorted); a glob
    (``*``, ``?``, ``[...]``, ``**`` for any depth) keeps the files it matches; a file is itself. The
    roots are the folders among the items, whose trees are mirrored under the output location. Every
    item must be on the same kind of filesystem, so that one Ray read reaches them all.

    Raises:
        UsageError: an item is missing or matches nothing, or the items mix schemes.
    """
    files: list[Url] = []
    roots: list[Url] = []
    scheme = None
    for item in items:
        base = open_url(item)
        if scheme not in (None, base.scheme):
            raise UsageError(f"inputs on {scheme}:// and {base.scheme}:// in one run; run one per filesystem")
        scheme = base.scheme
        if any(ch in base.path for ch in _GLOB_CHARS):
            found = _glob(base)
            if not found:
                raise UsageError(f"'{base}' matches no file")
            files += found
            continue
        info = _info(base)
        if info.type.name == "Directory":
            roots.append(base)
            files += sorted((f for f in _listing(base) if PurePosixPath(f.path).suffix.lower() in suffixes),
                            key=lambda u: u.path)
        elif info.type.name == "File":
            files.append(base)
        else:
            raise UsageError(f"{base}: no such file or folder")
    unique: dict[str, Url] = {}
    for f in files:
        unique.setdefault(f.path, f)
    return list(unique.values()), roots


def is_folder(url: Url) -> bool:
    """Whether ``url`` is a folder (on an object store: a prefix with objects below it)."""
    return _info(url).type.name == "Directory"


def _info(url: Url):
    try:
        return url.fs.get_file_info(url.path)
    except OSError as err:
        raise InputError(f"{url}: cannot be reached ({_first_line(err)})",
                         hint="check the URL and the credentials in the environment") from None


def _listing(folder: Url) -> list[Url]:
    """Every file below ``folder`` (recursive)."""
    from pyarrow.fs import FileSelector

    try:
        infos = folder.fs.get_file_info(FileSelector(folder.path.rstrip("/"), recursive=True, allow_not_found=True))
    except OSError as err:
        raise InputError(f"{folder}: cannot be listed ({_first_line(err)})",
                         hint="check the URL and the credentials in the environment") from None
    return [Url(folder.scheme, i.path, folder.fs) for i in infos if i.type.name == "File"]


def glob_regex(pattern: str) -> re.Pattern:
    """A glob over ``/``-separated paths: ``*`` and ``?`` stay within one segment, ``**`` spans any."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                out.append(fnmatch.translate(pattern[i:end + 1])[4:-3])  # fnmatch's own [..] rules
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _glob(pattern: Url) -> list[Url]:
    """The files matching a glob URL: its fixed leading folder listed once, then filtered."""
    head = pattern.path
    cut = min(head.find(ch) for ch in _GLOB_CHARS if ch in head)
    folder = head[:cut].rsplit("/", 1)[0]
    regex = glob_regex(pattern.path)
    return sorted((f for f in _listing(Url(pattern.scheme, folder, pattern.fs)) if regex.match(f.path)),
                  key=lambda u: u.path)


# -- outputs -------------------------------------------------------------------------------------
def mirror_target(f: AnyPath, roots: list[AnyPath], out_dir: AnyPath | None) -> AnyPath | None:
    """The output folder of one input, local or URL (see ``batch.mirror_target``): a file found
    inside a folder given on the command line keeps its sub-folder path below ``out_dir``."""
    if out_dir is None:
        return None
    if not isinstance(f, Url):
        from ..batch import mirror_target as local_target

        return local_target(f, [r for r in roots if isinstance(r, Path)], out_dir)
    for root in roots:
        if isinstance(root, Url) and root.scheme == f.scheme:
            prefix = root.path.rstrip("/") + "/"
            if f.path.startswith(prefix):
                return out_dir / posixpath.dirname(f.path[len(prefix):])
    return out_dir


class Existing:
    """Which output files exist: each folder on a URL is listed once (one request per folder, not
    per file, when the driver checks a million planned outputs); local paths are asked directly."""

    def __init__(self) -> None:
        self._folders: dict[str, set[str]] = {}

    def __call__(self, path: AnyPath) -> bool:
        if not isinstance(path, Url):
            return Path(path).exists()
        folder = path.parent
        names = self._folders.get(str(folder))
        if names is None:
            from pyarrow.fs import FileSelector

            try:
                infos = folder.fs.get_file_info(FileSelector(folder.path, allow_not_found=True))
            except OSError as err:
                raise OutputError(f"{folder}: cannot be listed ({_first_line(err)})") from None
            names = {PurePosixPath(i.path).name for i in infos if i.type.name == "File"}
            self._folders[str(folder)] = names
        return path.name in names


def exists(path: AnyPath) -> bool:
    """One file's existence, local or URL (a single request: what an actor asks before writing)."""
    if not isinstance(path, Url):
        return Path(path).exists()
    try:
        return path.fs.get_file_info(path.path).type.name == "File"
    except OSError as err:
        raise OutputError(f"{path}: cannot be checked ({_first_line(err)})") from None


def write_blobs(blobs: list[tuple[Url, bytes, int]], *, inputs: tuple = ()) -> list[Url]:
    """Write every ``(url, data, mode)`` whole, or none of them: see the module docstring.

    On the local disk (``file://``) this is :func:`imnkit.safefile.write_all`: each file is created
    with its ``mode`` (auxes and bundles 0600) under a random name, exclusively, then renamed. On
    another renaming filesystem all temporary files are written first, then moved into place; on an
    object store each object is one upload. On failure what was written is removed.

    Raises:
        OutputError: an output is one of ``inputs``, a local one is a symbolic link, or a write
            failed (nothing is kept).
    """
    for url, _, _ in blobs:
        if any(str(url) == str(i) for i in inputs):
            raise OutputError(f"{url}: refusing to overwrite an input file", hint="choose another output location")
    if blobs and all(filesystem_kind(url.fs) in _LOCAL for url, _, _ in blobs):
        from ..safefile import write_all

        try:
            write_all([(Path(url.path), data, mode) for url, data, mode in blobs])
        except OSError as err:
            raise OutputError(f"writing the outputs failed ({_first_line(err)}); nothing was kept") from None
        return [url for url, _, _ in blobs]
    written: list[Url] = []
    temps: list[tuple[Url, Url]] = []
    try:
        for url, data, _ in blobs:  # a mode means nothing on these filesystems
            if url.renames:
                url.fs.create_dir(url.parent.path, recursive=True)
                tmp = url.parent / f".{url.name}.{secrets.token_hex(8)}.tmp"
                temps.append((tmp, url))
                _put(tmp, data)
            else:
                _put(url, data)
                written.append(url)
        for tmp, url in temps:
            url.fs.move(tmp.path, url.path)
            written.append(url)
    except BaseException as err:
        # Neither a temporary file (they hold face pixels) nor a partial set of outputs is left behind.
        for url in [t for t, _ in temps] + written:
            _delete_quietly(url)
        if isinstance(err, OSError):
            raise OutputError(f"writing the outputs failed ({_first_line(err)}); nothing was kept") from None
        raise
    return written


def _put(url: Url, data: bytes) -> None:
    """One whole object: a single write, then close (the upload completes, or the object never appears)."""
    with url.fs.open_output_stream(url.path) as stream:
        stream.write(data)


def _delete_quietly(url: Url) -> None:
    try:
        url.fs.delete_file(url.path)
    except OSError:
        pass


def read_bytes(url: Url) -> bytes:
    """A whole file's bytes (an actor reading an input's EXIF again for ``--keep-metadata``)."""
    with url.fs.open_input_stream(url.path) as stream:
        return stream.read()


def list_names(folder: Url) -> list[str]:
    """The names of the files directly in ``folder`` (none when it does not exist)."""
    from pyarrow.fs import FileSelector

    try:
        infos = folder.fs.get_file_info(FileSelector(folder.path, allow_not_found=True))
    except OSError:
        return []
    return [PurePosixPath(i.path).name for i in infos if i.type.name == "File"]


def delete(url: Url) -> None:
    """Remove one file (a dead attempt's temporary file); a missing one is fine."""
    _delete_quietly(url)
