"""The built-in pool of replacement identities shipped in ``imnkit/data/identities``.

Each identity is an aligned RGB face image (PNG, lossless so every machine decodes the same
pixels) plus its 68 landmarks, listed in ``identities.json``. The pool is licence-clean: a
public-domain portrait and composites (averages of many people, which identify none of them);
``SOURCES.md`` beside the files gives the origin of each. ``scripts/build_identities.py``
rebuilds it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from imnkit.errors import UsageError, WeightsError

MANIFEST = "identities.json"
FORMAT_VERSION = 1
AGES = ("child", "young", "adult", "senior")
#: the looks the pool covers: (gender presentation, age band)
LOOKS = tuple((g, a) for a in AGES for g in ("f", "m"))


@dataclass(frozen=True, eq=False)
class Identity:
    """One replacement face: aligned image, its 68 landmarks and where it comes from.

    The image is read on first use: choosing an identity needs only the manifest, and a run
    uses one or two of the pool's images (decoding all 24 of the first pool took ~0.3 s).
    """

    name: str
    path: Path  # the aligned image (PNG)
    landmarks: np.ndarray  # (68, 2) float32 (x, y) pixels of ``image``
    origin: str
    licence: str
    gender: str = ""  # gender presentation: "f" or "m" ("" unknown)
    age: str = ""  # age band: one of AGES ("" unknown)
    tone: float = float("nan")  # skin tone, ITA degrees (see skin_tone)
    #: dlib descriptor of ``image`` (128 float32, :func:`imnkit.face.descriptors.pool_face_descriptor`),
    #: stored by the builder so choosing needs no rendering; None when the manifest has none
    descriptor: np.ndarray | None = None

    @functools.cached_property
    def image(self) -> np.ndarray:
        """(S, S, 3) uint8 RGB, read-only."""
        return _read_png(self.path)


def default_dir() -> Path:
    """Folder of the shipped pool inside the installed package."""
    return Path(str(resources.files("imnkit") / "data" / "identities"))


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


@functools.lru_cache(maxsize=4)
def _load(folder: str) -> tuple[Identity, ...]:
    root = Path(folder)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise WeightsError(
            f"identity pool manifest not found: {manifest}",
            hint="reinstall imnkit, or rebuild the pool with scripts/build_identities.py",
        )
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WeightsError(f"identity pool manifest {manifest} is unreadable: {type(err).__name__}") from err
    if meta.get("format") != FORMAT_VERSION:
        raise WeightsError(
            f"identity pool {manifest} has format {meta.get('format')!r}, expected {FORMAT_VERSION}",
            hint="rebuild it with scripts/build_identities.py from this imnkit version",
        )
    out = []
    for entry in meta["identities"]:
        path = root / entry["file"]
        if not path.is_file():
            raise WeightsError(f"identity image missing: {path}", hint="reinstall imnkit")
        lm = np.asarray(entry["landmarks"], dtype=np.float32)
        if lm.shape != (68, 2):
            raise WeightsError(f"identity {entry['name']!r} has landmarks of shape {lm.shape}, expected (68, 2)")
        lm.flags.writeable = False
        out.append(Identity(entry["name"], path, lm, entry.get("origin", ""), entry.get("licence", ""),
                            entry.get("gender", ""), entry.get("age", ""), float(entry.get("tone", "nan")),
                            _descriptor(entry)))
    if not out:
        raise WeightsError(f"identity pool {manifest} lists no identities")
    return tuple(out)


def _descriptor(entry: dict) -> np.ndarray | None:
    if "descriptor" not in entry:
        return None
    desc = np.asarray(entry["descriptor"], dtype=np.float32)
    if desc.shape != (128,) or not np.isfinite(desc).all():
        raise WeightsError(f"identity {entry['name']!r} has a descriptor of shape {desc.shape}, expected (128,) finite")
    desc.flags.writeable = False
    return desc


def load_pool(folder: str | Path | None = None) -> tuple[Identity, ...]:
    """All identities of the pool (cached), in manifest order."""
    return _load(str(Path(folder) if folder is not None else default_dir()))


def identity_names(folder: str | Path | None = None) -> list[str]:
    """Names of the pool's identities, in manifest order."""
    return [i.name for i in load_pool(folder)]


def get_identity(name: str, folder: str | Path | None = None) -> Identity:
    """The identity called ``name``; :class:`UsageError` lists the valid names otherwise."""
    for ident in load_pool(folder):
        if ident.name == name:
            return ident
    raise UsageError(
        f"unknown replacement identity {name!r}",
        hint="choose one of: " + ", ".join(identity_names(folder)),
    )


def assign_identities(
    n_faces: int, seed: int = 0, names: Sequence[str] | None = None
) -> list[str]:
    """Pool names for ``n_faces`` faces, reproducible from ``seed``.

    A seeded permutation of the pool is dealt out in order, so faces of one photo get
    different identities until the pool is used up (then it starts over).
    """
    if n_faces < 0:
        raise UsageError(f"n_faces must be >= 0, got {n_faces}")
    pool = list(names) if names is not None else identity_names()
    if not pool:
        raise UsageError("the identity pool is empty")
    perm = np.random.default_rng(int(seed)).permutation(len(pool))
    return [pool[int(perm[i % len(pool)])] for i in range(n_faces)]


def skin_tone(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Skin tone of a face as the Individual Typology Angle (ITA, degrees) of its cheeks.

    ITA = atan((L* - 50) / b*) over the median CIELab of the cheek skin (below the eyes, beside
    the nose, above the mouth): about > 55 very light, 28-55 light/intermediate, 10-28 tan,
    < 10 brown/dark. Light falling on the face shifts it, so it is a coarse cue.
    """
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64)
    h, w = image.shape[:2]
    polys = []
    for poly in (lm[[1, 2, 3, 48, 31, 39, 40, 41, 36]], lm[[15, 14, 13, 54, 35, 42, 47, 46, 45]]):
        c = poly.mean(axis=0)
        polys.append(np.round(c + 0.7 * (poly - c)).astype(np.int32))  # clear of the jaw line, eyes and nostrils
    # Only the cheeks' box is converted to Lab (a whole 1024^2 photo took ~60 ms).
    pts = np.vstack(polys)
    x0, y0 = np.clip(pts.min(axis=0), 0, [w, h])
    x1, y1 = np.clip(pts.max(axis=0) + 1, 0, [w, h])
    mask = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.uint8)
    if mask.size:
        cv2.fillPoly(mask, [(p - [x0, y0]).astype(np.int32) for p in polys], 1)
    if mask.sum() < 20:
        return float("nan")
    roi = np.ascontiguousarray(image[y0:y1, x0:x1])
    lab = cv2.cvtColor(roi, cv2.COLOR_RGB2LAB)[mask.astype(bool)].astype(np.float64)
    ll = np.median(lab[:, 0]) * 100.0 / 255.0
    bb = np.median(lab[:, 2]) - 128.0
    return float(np.degrees(np.arctan2(ll - 50.0, bb)))
