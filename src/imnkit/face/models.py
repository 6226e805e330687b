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
from pathlib import Path
from typing import Any

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


@functools.lru_cache(maxsize=None)
def _load(kind: str, path: str) -> Any:
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
