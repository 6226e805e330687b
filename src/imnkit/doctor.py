"""What `imnkit doctor` reports: versions, devices, weights state, offline state."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from . import __version__

_PACKAGES = ("torch", "numpy", "pillow", "safetensors", "huggingface-hub", "typer", "rich", "dlib-bin",
             "face_recognition_models", "opencv-python-headless")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def weights_state(spec) -> str:
    """shipped | cached | missing (for Hub files: in the local HF cache or not)."""
    from .errors import UsageError, WeightsError
    from .weights import resolve_path

    try:
        resolve_path(spec.name, download=False)
    except (WeightsError, UsageError):
        return "missing"
    return "shipped" if spec.source == "package" else "cached"


def collect() -> dict[str, Any]:
    from .devices import describe_devices
    from .weights import list_weights
    from .weights.hub import hub_offline

    try:
        from huggingface_hub.constants import HF_HUB_CACHE as cache
    except ImportError:  # pragma: no cover
        cache = "?"
    weights = [
        {"name": s.name, "source": s.source, "state": weights_state(s), "license": s.license,
         "repo_id": s.repo_id, "filename": s.filename}
        for s in list_weights()
    ]
    problems = []
    packages = {p: _version(p) for p in _PACKAGES}
    for name, ver in packages.items():
        if ver == "missing":
            problems.append(f"package {name} is not installed")
    for w in weights:
        if w["source"] == "package" and w["state"] != "shipped":
            problems.append(f"shipped weights {w['name']} are missing: reinstall imnkit")
    from .errors import WeightsError
    from .face import models as face_models

    dlib_models = {}
    for filename in face_models.MODEL_FILES:
        try:
            dlib_models[filename] = str(face_models.model_path(filename))
        except WeightsError:
            dlib_models[filename] = "missing"
            problems.append(f"dlib model file {filename} is missing (pip install face_recognition_models)")
    return {
        "imnkit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": packages,
        "devices": describe_devices(),
        "offline": hub_offline(),
        "hf_cache": str(cache),
        "weights": weights,
        "dlib_models": dlib_models,
        "problems": problems,
    }
