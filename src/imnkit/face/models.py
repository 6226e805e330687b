"""Locate and load the dlib model files shipped by the ``face_recognition_models`` package.

``face_recognition_models/__init__.py`` imports ``pkg_resources``, which new setuptools no longer
provides, so the package is never imported here: its folder is found from the import spec
alone (``importlib.util.find_spec`` does not run a top-level package's ``__init__``).
Set ``IMNKIT_FACE_MODELS`` to a folder holding the ``.dat`` files to use other copies.

dlib builds its HOG face detector from a copy compiled into it, which takes ~0.5 s on 2 cores; a
copy saved once in the user's cache (``IMNKIT_CACHE``, else ``$XDG_CACHE_HOME/imnkit`` or
``~/.cache/imnkit``; named by dlib's version, checked by its sha256) loads in ~3 ms.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from imnkit.errors import WeightsError

PACKAGE = "face_recognition_models"
ENV_DIR = "IMNKIT_FACE_MODELS"

SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"
MODEL_FILES = (SHAPE_68, SHAPE_5, RESNET, MMOD)


def _package_dirs() -> list[Path]:
    """Folders of the installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def model_path(filename: str) -> Path:
    """Path of one dlib model file; :class:`WeightsError` says how to get it when absent."""
    candidates: list[Path] = []
    env = os.environ.get(ENV_DIR)
    if env:
        candidates.append(Path(env) / filename)
    for d in _package_dirs():
        candidates.append(d / "models" / filename)
    for c in candidates:
        if c.is_file():
            return c
    where = ", ".join(str(c) for c in candidates) or "nowhere (package not installed)"
    raise WeightsError(
        f"dlib model file {filename!r} not found; looked in {where}",
        hint=f"pip install face_recognition_models, or set {ENV_DIR} to a folder holding {filename}",
    )


_LOADED: dict[tuple[str, str], Any] = {}
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()
T = TypeVar("T")


def _load(kind: str, path: str) -> Any:
    """The model of ``kind`` at ``path``, read once per process (a thread asking while another
    reads it waits for that read)."""
    key = (kind, path)
    with _LOCKS_LOCK:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _LOADED:
            _LOADED[key] = _read(kind, path)
        return _LOADED[key]


def _read(kind: str, path: str) -> Any:
    import dlib

    try:
        if kind == "shape":
            return dlib.shape_predictor(path)
        if kind == "resnet":
            return dlib.face_recognition_model_v1(path)
        if kind == "mmod":
            return dlib.cnn_face_detection_model_v1(path)
    except RuntimeError as err:  # dlib raises RuntimeError for unreadable / truncated files
        raise WeightsError(
            f"cannot load dlib model {path}: {type(err).__name__}",
            hint="reinstall face_recognition_models or point IMNKIT_FACE_MODELS at intact files",
        ) from err
    raise ValueError(kind)


def alongside_shape_predictor(call: Callable[[], T], filename: str = SHAPE_68) -> T:
    """``call()``, with the landmark predictor read on another thread meanwhile (once per process).

    Reading the predictor takes ~0.9 s on 2 cores and dlib holds the GIL while it reads, so only
    native work that releases the GIL runs alongside: ``call`` should be one such call (e.g. an
    OpenCV network's forward pass). The reader waits a moment so that ``call`` is entered first;
    otherwise the two run one after the other, as without this. A read error is raised later,
    where the predictor is used (:func:`shape_predictor`).
    """
    try:
        key = ("shape", str(model_path(filename)))
    except WeightsError:
        return call()
    with _LOCKS_LOCK:
        started = key in _LOCKS
        _LOCKS.setdefault(key, threading.Lock())
    if not started:
        threading.Thread(target=_read_soon, args=key, name="imnkit-read-landmark-model", daemon=True).start()
    return call()


def _read_soon(kind: str, path: str) -> None:
    time.sleep(0.002)  # the caller enters its native call (and drops the GIL) meanwhile
    try:
        _load(kind, path)
    except Exception:  # noqa: BLE001 - shape_predictor() reads it again and raises the error there
        pass


def shape_predictor(filename: str = SHAPE_68) -> Any:
    """The (cached) dlib landmark predictor."""
    return _load("shape", str(model_path(filename)))


def recognition_model() -> Any:
    """The (cached) dlib ResNet face recognition model (128-d descriptors)."""
    return _load("resnet", str(model_path(RESNET)))


def cnn_detector() -> Any:
    """The (cached) dlib MMOD CNN face detector, used to confirm doubtful HOG detections."""
    return _load("mmod", str(model_path(MMOD)))


def cache_dir() -> Path:
    """Where imnkit keeps files it can rebuild (the HOG detector's saved copy)."""
    env = os.environ.get("IMNKIT_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imnkit"


@functools.lru_cache(maxsize=None)
def hog_detector() -> Any:
    """dlib's HOG + linear SVM frontal face detector (built into dlib), from the cache when it holds it."""
    import dlib

    path = cache_dir() / f"dlib-{dlib.__version__}-frontal-face-hog.svm"
    digest = path.with_suffix(".sha256")
    try:
        if digest.read_text().strip() == hashlib.sha256(path.read_bytes()).hexdigest():
            return dlib.fhog_object_detector(str(path))
    except (OSError, RuntimeError):  # absent, unreadable or not a detector: rebuilt below
        pass
    detector = dlib.get_frontal_face_detector()
    _save_copy(detector, path, digest)
    return detector


def _save_copy(detector: Any, path: Path, digest: Path) -> None:
    """Save the detector and its sha256 atomically; a cache that cannot be written is simply not used."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            detector.save(tmp)
            data = Path(tmp).read_bytes()
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{digest.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(hashlib.sha256(data).hexdigest() + "\n")
        os.replace(tmp, digest)
    except OSError:
        pass
