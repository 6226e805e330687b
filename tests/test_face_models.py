"""Locating the dlib model files of face_recognition_models without importing that package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imnkit.errors import WeightsError
from imnkit.face import models

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_locator_finds_every_file_without_importing_the_package():
    # A fresh interpreter, so nothing else has imported face_recognition_models (whose
    # __init__ needs pkg_resources) before the locator runs.
    code = (
        "import sys\n"
        "from imnkit.face import models\n"
        "paths = [models.model_path(f) for f in models.MODEL_FILES]\n"
        "assert all(p.is_file() and p.stat().st_size > 1000 for p in paths), paths\n"
        "assert 'face_recognition_models' not in sys.modules\n"
        "models.shape_predictor(); models.recognition_model()\n"
        "assert 'face_recognition_models' not in sys.modules\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(models.ENV_DIR, None)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok"


def test_missing_model_file_is_a_weights_error_with_a_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "_package_dirs", lambda: [])
    monkeypatch.setenv(models.ENV_DIR, str(tmp_path))
    with pytest.raises(WeightsError) as err:
        models.model_path(models.SHAPE_68)
    assert models.SHAPE_68 in str(err.value)
    assert "face_recognition_models" in (err.value.hint or "")


def test_env_folder_overrides_and_a_corrupt_file_is_a_weights_error(monkeypatch, tmp_path):
    bad = tmp_path / models.SHAPE_68
    bad.write_bytes(b"not a dlib model")
    monkeypatch.setenv(models.ENV_DIR, str(tmp_path))
    assert models.model_path(models.SHAPE_68) == bad
    with pytest.raises(WeightsError, match="cannot load"):
        models.shape_predictor()


def test_hog_detector_cached_copy_matches_and_a_bad_copy_is_rebuilt(monkeypatch, tmp_path):
    import dlib

    monkeypatch.setenv("IMNKIT_CACHE", str(tmp_path))
    models.hog_detector.cache_clear()
    built = models.hog_detector()  # built from dlib, saved to the cache
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert len(saved) == 2 and saved[0].endswith(".sha256") and saved[1].endswith(".svm")
    models.hog_detector.cache_clear()
    cached = models.hog_detector()  # loaded from the saved copy
    rng = np.random.default_rng(0)
    img = np.ascontiguousarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8))
    img[40:120, 40:120] = 180  # something to score
    def found(detector):
        rects, scores, _ = detector.run(img, 1, -2.0)
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects], list(scores)

    assert found(cached) == found(built) and found(built)[0]  # the same detections, and there are some
    svm = tmp_path / saved[1]
    svm.write_bytes(svm.read_bytes()[:1000])  # a damaged copy fails its sha256 and is rebuilt
    models.hog_detector.cache_clear()
    assert isinstance(models.hog_detector(), dlib.fhog_object_detector)
    assert svm.stat().st_size > 1000
    models.hog_detector.cache_clear()


def test_predictor_read_alongside_a_call_is_read_once_and_shared(monkeypatch, tmp_path):
    # A copy of the 5-point model in a folder of its own: a key no other test has read.
    (tmp_path / models.SHAPE_5).write_bytes(models.model_path(models.SHAPE_5).read_bytes())
    monkeypatch.setenv(models.ENV_DIR, str(tmp_path))
    reads = []
    real = models._read
    monkeypatch.setattr(models, "_read", lambda kind, path: reads.append(path) or real(kind, path))
    assert models.alongside_shape_predictor(lambda: "done", models.SHAPE_5) == "done"
    first = models.shape_predictor(models.SHAPE_5)  # waits for the background read if it is running
    assert models.shape_predictor(models.SHAPE_5) is first
    assert models.alongside_shape_predictor(lambda: 7, models.SHAPE_5) == 7  # no second read
    assert reads == [str(tmp_path / models.SHAPE_5)]


def test_a_broken_predictor_read_alongside_fails_where_the_predictor_is_used(monkeypatch, tmp_path):
    data = models.model_path(models.SHAPE_5).read_bytes()
    (tmp_path / models.SHAPE_5).write_bytes(data[: len(data) // 3])
    monkeypatch.setenv(models.ENV_DIR, str(tmp_path))
    assert models.alongside_shape_predictor(lambda: 1, models.SHAPE_5) == 1  # the call itself is unaffected
    with pytest.raises(WeightsError, match="cannot load dlib model"):
        models.shape_predictor(models.SHAPE_5)
