"""Batch helpers: sharding a list of inputs and mirroring folder trees into an output folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import UsageError


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N) with 0 <= i < N."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise UsageError(f"--shard must look like i/N (e.g. 0/4), got '{text}'") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need 0 <= i < N")
    return i, n


def select_shard(files: list[Path], shard: str) -> list[Path]:
    """The files of shard i of N, chosen by a stable hash of the path so that shards never overlap
    and every process sees the same split whatever order the files were listed in."""
    i, n = parse_shard(shard)

    def bucket(p: Path) -> int:
        return int.from_bytes(hashlib.sha1(str(p).encode("utf-8")).digest()[:8], "big") % n

    return [f for f in files if bucket(f) == i]


def output_stem(path: Path) -> str:
    """'photo.masked.png' -> 'photo' ('.masked' and '.mask' are dropped so names do not pile up)."""
    stem = path.stem
    for suffix in (".masked", ".recovered", ".bundle"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def mirror_out_dirs(files: list[Path], items: list[str], out_dir: Path | None) -> list[tuple[Path, Path | None]]:
    """Pair each file with the folder its outputs go to.

    Without ``out_dir`` outputs go beside their input (None). With it, a file found inside a folder
    given on the command line keeps its sub-folder path below ``out_dir``, so names never collide.
    """
    roots = mirror_roots(items)
    return [(f, mirror_target(f, roots, out_dir)) for f in files]


def mirror_roots(items: list[str]) -> list[Path]:
    """The folders among the command-line items, resolved: the roots whose trees are mirrored."""
    return [Path(item).resolve() for item in items if Path(item).is_dir()]


def mirror_target(f: Path, roots: list[Path], out_dir: Path | None) -> Path | None:
    """The output folder of one file (see ``mirror_out_dirs``); computable wherever the file is read."""
    if out_dir is None:
        return None
    rf = f.resolve()
    for root in roots:
        if rf.is_relative_to(root):
            return out_dir / rf.parent.relative_to(root)
    return out_dir
