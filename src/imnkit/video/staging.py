"""Where a clip's outputs are written until all are complete: a private folder inside the output folder.

FFmpeg (through PyAV) opens its output files itself, following symlinks and without ``O_EXCL``, so a
temporary name in a shared output folder could be taken in advance by someone else (a symlink to a
victim file, or a file whose mode then holds). Instead, every temporary file of a clip lives in one
folder made by :func:`tempfile.mkdtemp` beside the outputs: a random name, created exclusively, mode
0700, so nobody else can create or replace a file in it. Each file is created there exclusively
(``O_EXCL | O_NOFOLLOW``) with its final mode (:data:`imnkit.safefile.PRIVATE` for the aux and a
recovered clip, :data:`imnkit.safefile.SHAREABLE` for a masked clip) before FFmpeg or anything else
writes to it (FFmpeg truncates the file, which keeps its mode). Once every output is complete, each
is checked to be a regular file, given its mode again, synced, and renamed onto its output with
:func:`imnkit.safefile.publish`, which refuses a symlink there (a rename never writes through one).
This is :mod:`imnkit.safefile`'s ``output_path`` for several outputs at once: all or none.

On an error, KeyboardInterrupt, SIGTERM or SIGHUP, the folder is removed with everything in it: nothing
half-written is left. (SIGKILL cannot be caught: it leaves the folder, readable by its owner only.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from imnkit.errors import OutputError
from imnkit.safefile import PRIVATE, SHAREABLE, publish, refuse_symlink, seal_written

__all__ = ["PRIVATE", "SHAREABLE", "Staging", "Terminated", "staged"]

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

# Signals that end a run from outside (kill, a closed terminal): turned into an exception while a
# clip is staged, so the temporary files are removed on the way out.
_CAUGHT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Staging:
    """The private folder of one clip's outputs: :meth:`file` gives a temporary per output,
    :meth:`commit` renames them all into place."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._files: list[tuple[Path, Path, int]] = []  # (temporary, output, mode)
        self._scratches = 0

    def file(self, output: Path, mode: int) -> Path:
        """A new empty file in the private folder for ``output``, created exclusively with ``mode``."""
        tmp = self.folder / f"{len(self._files)}{output.suffix}"  # FFmpeg picks the muxer by the suffix too
        try:
            fd = os.open(tmp, _CREATE, PRIVATE)  # the umask can only narrow this; fchmod sets it exactly
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        except OSError as err:
            raise OutputError(f"{output.parent}: cannot write here ({err.strerror or type(err).__name__})") from None
        self._files.append((tmp, output, mode))
        return tmp

    def scratch(self, suffix: str) -> Path:
        """A new empty file in the private folder (mode 0600) that is never published: an intermediate
        step (the masked clip before its aux is attached), removed with the folder."""
        self._scratches += 1
        tmp = self.folder / f"scratch{self._scratches}{suffix}"
        try:
            os.close(os.open(tmp, _CREATE, PRIVATE))
        except OSError as err:
            raise OutputError(f"{self.folder.parent}: cannot write here ({err.strerror or type(err).__name__})") from None
        return tmp

    def commit(self) -> None:
        """Rename every temporary onto its output, in order; if one fails, remove those already renamed.

        Raises:
            OutputError: an output is a symbolic link, or a writer left something other than a file.
            OSError: a rename failed.
        """
        for tmp, output, mode in self._files:
            seal_written(tmp, output, mode)
        done: list[Path] = []
        try:
            for tmp, output, _ in self._files:
                publish(tmp, output)
                done.append(output)
        except BaseException:
            for path in done:
                path.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def staged(outputs: list[Path]) -> Iterator[Staging]:
    """A :class:`Staging` in the folder of ``outputs`` (all in one folder); the folder is always removed.

    Raises:
        OutputError: an output path is a symlink, or the folder cannot be made or written.
        Terminated: SIGTERM or SIGHUP arrived (after the folder was removed).
    """
    for output in outputs:
        refuse_symlink(output)
    parent = outputs[0].parent
    with _signals_raise() as signals:  # before the folder exists: a signal now still removes it
        try:
            parent.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f".{outputs[0].name}.", suffix=".tmp", dir=parent))
        except OSError as err:
            raise OutputError(f"{parent}: cannot write here ({err.strerror or type(err).__name__})") from None
        try:
            yield Staging(folder)
        finally:
            with signals.held():  # a second signal must not cut the removal short
                shutil.rmtree(folder, ignore_errors=True)  # face pixels and keys: never left behind


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM or SIGHUP arrives while a clip is staged (exit 128 + signal)."""


class _Signals:
    """The handler of the caught signals: raises :class:`Terminated`, or, while :meth:`held`, notes the
    signal and raises once the block is done."""

    def __init__(self) -> None:
        self._holding = False
        self._pending: int | None = None

    def handle(self, signum: int, _frame) -> None:
        if self._holding:
            self._pending = signum
            return
        raise Terminated(128 + signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending is not None:
            raise Terminated(128 + self._pending)


@contextlib.contextmanager
def _signals_raise() -> Iterator[_Signals]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` instead of ending the process at once.

    Only from the main thread (Python runs handlers there) and only for signals still at their default:
    a handler the application installed is left alone.
    """
    signals = _Signals()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _CAUGHT_SIGNALS:
            if signal.getsignal(sig) is signal.SIG_DFL:
                previous[sig] = signal.signal(sig, signals.handle)
    try:
        yield signals
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
