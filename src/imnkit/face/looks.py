"""A face's apparent look (gender presentation, age band, skin tone) and the pool identities that match it.

Gender presentation and age are read off the face's dlib descriptor by a linear (ridge)
regression shipped with the pool (``looks.json``, fitted by ``scripts/build_identities.py`` on
permissively licensed and CC0, hand-labelled photos, each also shrunk to a small face and turned
grey): ``gender`` is about +1 for a woman's look and -1 for a man's. The descriptor read is the
mean of the face's and its mirror image's (:func:`look_descriptor`: one descriptor more per face;
a face's two sides see its light and pose differently, and the mean reads the look steadier),
and gender presentation is also read from the colours around the face that the swap keeps --
hair beside the jaw, the top of the head, the neck (:func:`context_features`); ``age`` is
regressed on 0 child, 1 young, 2 adult, 3 senior and mapped to bands by cut points fitted on the
same photos. Skin tone is measured on the cheeks (:func:`imnkit.face.identities.skin_tone`).
These are coarse cues for choosing a natural-looking replacement, not attributes reported to
anyone.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from imnkit.errors import WeightsError
from imnkit.face.descriptors import face_descriptor
from imnkit.face.detect import Face, make_face
from imnkit.face.identities import AGES, Identity, default_dir

LOOKS_FILE = "looks.json"
#: faces read below this age (0 child .. 3 senior) count as clearly children: the regression
#: puts young children at 0, while some young women's faces land in the child band's top half
CLEAR_CHILD = 0.25
#: a gender-presentation reading this close to 0 is unsure: identities of either are acceptable
UNSURE_GENDER = 0.25
#: an identity's age band (0 child .. 3 senior) at most this far from the face's reading is acceptable
AGE_REACH = 1.25
#: a face whose cheeks read under this ITA (degrees; "brown/dark" on the scale, well clear of
#: the warm-lit light faces that read 10-25) gets its look's darker-skinned identities first
DARK_FACE = 10.0
#: an identity under this ITA counts as darker-skinned
DARK_IDENTITY = 28.0
#: identities of an unacceptable look are kept (last) only while the acceptable ones number fewer
#: (the swap tries up to 8 per face; a face whose look is rare still gets enough to try)
MIN_ACCEPTABLE = 8


#: dlib's 68 landmarks of a mirrored face: point k of the mirror image is point MIRROR_68[k] of the
#: face (jaw, brows, nose wings, eyes and lips swap sides; the midline stays)
MIRROR_68 = np.r_[16:-1:-1, 26:21:-1, 21:16:-1, 27:31, 35:30:-1, 45:41:-1, 47, 46, 39:35:-1, 41, 40,
                  54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1]


@dataclass(frozen=True)
class Look:
    """Apparent look of one face."""

    gender: float  # > 0: a woman's look, < 0: a man's (about -1 .. 1)
    age: float  # about 0 child, 1 young, 2 adult, 3 senior
    tone: float  # ITA degrees, NaN when unknown (grey photo)


@functools.lru_cache(maxsize=4)
def _model(folder: str) -> dict[str, tuple[np.ndarray, float]]:
    path = Path(folder) / LOOKS_FILE
    if not path.is_file():
        raise WeightsError(f"look model not found: {path}",
                           hint="reinstall imnkit, or rebuild the pool with scripts/build_identities.py --looks-only")
    meta = json.loads(path.read_text(encoding="utf-8"))
    out = {k: (np.asarray(meta[k]["w"], dtype=np.float64), float(meta[k]["b"])) for k in ("gender", "age")}
    out["cuts"] = (np.asarray(meta["age"]["cuts"], dtype=np.float64), 0.0)
    for part in ("geometry", "context"):
        if part in meta:
            out[part] = (np.asarray(meta[part]["mean"], dtype=np.float64), np.asarray(meta[part]["scale"], dtype=np.float64))
    return out


def geometry_features(landmarks: np.ndarray) -> np.ndarray:
    """Proportions that change with age, over the jaw width: eyes-to-chin length, eye width,
    nose length, mouth width, lower-lip-to-chin length (children: short lower face, big eyes)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    w = max(float(np.linalg.norm(lm[16] - lm[0])), 1e-6)
    eyes = lm[36:48].mean(axis=0)
    return np.array([
        np.linalg.norm(lm[8] - eyes), np.mean([np.linalg.norm(lm[39] - lm[36]), np.linalg.norm(lm[45] - lm[42])]),
        np.linalg.norm(lm[33] - lm[27]), np.linalg.norm(lm[54] - lm[48]), np.linalg.norm(lm[8] - lm[57]),
    ]) / w


def look_features(descriptor: np.ndarray, landmarks: np.ndarray | None, mean: np.ndarray, scale: np.ndarray,
                  geo: np.ndarray | None = None) -> np.ndarray:
    """The regression's input: the dlib descriptor and the normalised age proportions
    (``geo``: proportions already computed, instead of ``landmarks``)."""
    g = geometry_features(landmarks) if geo is None else np.asarray(geo, dtype=np.float64)
    return np.r_[np.asarray(descriptor, dtype=np.float64), (g - mean) * scale]


#: where :func:`context_features` looks, in jaw widths from the eyes' centre along the eye line (x,
#: both sides) and down the face (y): beside the jaw at mouth and at chin height, above the
#: forehead, below the chin; last the cheek they are measured against
CONTEXT_PATCHES = ((0.62, 0.55), (0.62, 0.85), (0.0, -0.7), (0.0, 1.2), (0.28, 0.35))


def context_features(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """What the swap keeps around a face, as the look model reads it: the median CIELab colour
    (L*, a*, b* over 50) of small patches (:data:`CONTEXT_PATCHES`, sides averaged) beside the
    jaw (long hair falls there, else neck or background), above the forehead (hair, a bald crown
    or a headscarf) and below the chin (neck, collar or a beard), each less the cheek's.

    The Mask replaces only the inner face, so hair and neck are what a viewer still reads the
    person's look from; a grey photo gives L* only.
    """
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64)
    eyes = lm[36:48].mean(axis=0)
    jaw = max(float(np.linalg.norm(lm[16] - lm[0])), 1e-6)
    across = (lm[45] - lm[36]) / max(float(np.linalg.norm(lm[45] - lm[36])), 1e-6)
    down = np.array([-across[1], across[0]])
    if np.dot(lm[8] - eyes, down) < 0:
        down = -down
    r = max(1, int(round(0.08 * jaw)))
    h, w = image.shape[:2]
    colours = []
    for px, py in CONTEXT_PATCHES:
        sides = []
        for sign in ((1.0, -1.0) if px else (1.0,)):
            x, y = eyes + (sign * px * across + py * down) * jaw
            x, y = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))  # off the photo: its edge
            roi = np.ascontiguousarray(image[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1])
            sides.append(np.median(cv2.cvtColor(roi, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64), axis=0))
        colours.append(np.mean(sides, axis=0))
    colours = np.asarray(colours)
    return ((colours[:-1] - colours[-1]) / 50.0).ravel()


def mirrored_descriptor(image: np.ndarray, face: Face) -> np.ndarray:
    """The dlib descriptor of ``face`` seen in a mirror: a crop around it (the face's size on
    every side, all dlib's chip needs) flipped left to right, with its landmarks."""
    lm = np.asarray(face.landmarks, dtype=np.float64)
    y0, x0, y1, x1 = face.box
    side = max(y1 - y0, x1 - x0)
    h, w = image.shape[:2]
    lx, ly = (int(max(np.floor(v - side), 0)) for v in lm.min(axis=0))
    hx, hy = (int(min(np.ceil(v + side) + 1, n)) for v, n in zip(lm.max(axis=0), (w, h)))
    crop = np.ascontiguousarray(image[ly:hy, lx:hx][:, ::-1])
    flip = (lm - [lx, ly])[MIRROR_68]
    flip[:, 0] = crop.shape[1] - 1 - flip[:, 0]
    lo, hi = flip.min(axis=0), flip.max(axis=0)
    return face_descriptor(crop, make_face(flip, (int(lo[1]), int(lo[0]), int(hi[1]) + 1, int(hi[0]) + 1)))


def look_descriptor(image: np.ndarray, face: Face, descriptor: np.ndarray | None = None) -> np.ndarray:
    """What the look is read from: the mean of the face's dlib descriptor (``descriptor`` when
    already computed) and its mirror image's (:func:`mirrored_descriptor`)."""
    own = face_descriptor(image, face) if descriptor is None else np.asarray(descriptor)
    return (own.astype(np.float64) + mirrored_descriptor(image, face)) / 2.0


def read_look(image: np.ndarray, face: Face, tone: float, folder: str | Path | None = None,
              descriptor: np.ndarray | None = None) -> Look:
    """The look of ``face`` in ``image``: :func:`estimate_look` on :func:`look_descriptor` and
    :func:`context_features`."""
    return estimate_look(look_descriptor(image, face, descriptor), face.landmarks, tone, folder,
                         context=context_features(image, face.landmarks))


def estimate_look(descriptor: np.ndarray, landmarks: np.ndarray, tone: float, folder: str | Path | None = None,
                  context: np.ndarray | None = None) -> Look:
    """The look of a face from its look descriptor (:func:`look_descriptor`), its 68 landmarks,
    its measured skin tone and what surrounds it (:func:`context_features`; None: read as the
    training faces' average)."""
    model = _model(str(Path(folder) if folder is not None else default_dir()))
    d = look_features(descriptor, landmarks, *model["geometry"])
    dg = d
    if "context" in model:  # gender presentation is also read from what surrounds the face; age is not
        mean, scale = model["context"]
        ctx = mean if context is None else np.asarray(context, dtype=np.float64)
        dg = np.r_[d, (ctx - mean) * scale]
    g = float(dg @ model["gender"][0] + model["gender"][1])
    a = float(d @ model["age"][0] + model["age"][1])
    # The band (0..3) from the fitted cut points, plus where it sits between them (-0.5..0.5).
    cuts = model["cuts"][0]
    band = int(np.searchsorted(cuts, a))
    lo = cuts[band - 1] if band > 0 else cuts[0] - 1.0
    hi = cuts[band] if band < len(cuts) else cuts[-1] + 1.0
    age = band + float(np.clip((a - lo) / max(hi - lo, 1e-6), 0.0, 1.0)) - 0.5
    return Look(gender=float(np.clip(g, -1.5, 1.5)), age=float(np.clip(age, 0.0, 3.0)), tone=tone)


def mismatch(look: Look, ident: Identity) -> float:
    """How far an identity's look is from ``look`` (0: same gender, age band and tone).

    A gender-presentation mismatch costs 0.5 plus 1 per unit of confidence, each age band 1,
    and 30 degrees of skin tone 0.5 (the swap matches colour anyway; tone mostly stands for
    build).
    """
    cost = 0.0
    if ident.gender in ("f", "m"):
        sign = 1.0 if ident.gender == "f" else -1.0
        if sign * look.gender < 0:
            cost += 0.5 + abs(look.gender)
    if ident.age in AGES:
        cost += abs(look.age - AGES.index(ident.age))
        if ident.age == "child" and look.age > CLEAR_CHILD:
            cost += 1.0  # a child's face only on a face read clearly as a child's
    if not (math.isnan(look.tone) or math.isnan(ident.tone)):
        cost += 0.5 * abs(look.tone - ident.tone) / 30.0
    return cost


def acceptable(look: Look, ident: Identity) -> bool:
    """Whether an identity's look may stand for ``look`` at all: the same gender presentation
    (either when the reading is unsure, or the face reads as a child's: a young child's gender
    presentation is hardly in the face, and the regression was fitted on few) and an age band
    within :data:`AGE_REACH` (so a child's face never gets an adult's identity); a child's
    identity only for a face read clearly as a child's (:data:`CLEAR_CHILD`)."""
    if ident.gender in ("f", "m") and abs(look.gender) >= UNSURE_GENDER and look.age >= 0.5:
        if (1.0 if ident.gender == "f" else -1.0) * look.gender < 0:
            return False
    if ident.age == "child" and look.age > CLEAR_CHILD:
        # A child's identity only on a face read clearly as a child's: in a crowded photo, once
        # the good matches are taken, a young adult's face must not fall back on a child's.
        return False
    return ident.age not in AGES or abs(AGES.index(ident.age) - look.age) <= AGE_REACH


def rank_by_look(look: Look, pool: Sequence[Identity], seed: int, salt: int = 0, spread: float = 0.3) -> list[str]:
    """Pool names, best look match first: those of the best match's look (and any within
    ``spread`` of its cost) in seeded order, then the rest by cost.

    ``salt`` (e.g. from the face's descriptor) makes different people of the same look draw
    different identities for the same ``seed``; the order is deterministic.
    """
    near, rest = look_groups(look, pool, seed, salt, spread)
    return near + rest


def look_groups(look: Look, pool: Sequence[Identity], seed: int, salt: int = 0,
                spread: float = 0.3) -> tuple[list[str], list[str]]:
    """:func:`rank_by_look` in its two parts: (the good look matches in seeded order, the rest).

    The rest holds the identities of an acceptable look (:func:`acceptable`) by cost; those of
    another look follow only while there are fewer than :data:`MIN_ACCEPTABLE` in all. So in a
    photo of many people, once its good matches are taken a face gets one of them again rather
    than the first unused identity of another gender presentation or age (the swap tries unused
    identities first).
    """
    costs = {i.name: mismatch(look, i) for i in pool}
    ok = {i.name for i in pool if acceptable(look, i)}
    # The best match is one of an acceptable look (while there is one): the tone's cost must not
    # bring another gender presentation or age into the first group (a senior woman's face read in
    # warm, dim light as ITA -25 got a darker-skinned adult man's identity first).
    mine = [i for i in pool if i.name in ok] or list(pool)
    best = min(costs[i.name] for i in mine)
    top = next(i for i in mine if costs[i.name] == best)
    # All identities of the best match's look, and any others nearly as good: enough choice
    # that different people of one look get different identities.
    near = sorted(i.name for i in mine if (i.gender, i.age) == (top.gender, top.age) or costs[i.name] <= best + spread)
    rng = np.random.default_rng([int(seed), int(salt)])
    near = [near[int(k)] for k in rng.permutation(len(near))]
    if look.tone < DARK_FACE:  # NaN (grey photo) compares False
        # A darker-skinned face takes the features of a darker-skinned identity first (the swap
        # sets the colour anyway; the features are what the tone stands for), still in seeded order.
        tone = {i.name: i.tone for i in pool}
        near = sorted(near, key=lambda n: not tone[n] < DARK_IDENTITY)
    rest = sorted((n for n in costs if n not in near), key=lambda n: (costs[n], n))
    good = [n for n in rest if n in ok]
    other = [n for n in rest if n not in ok]
    return near, good + other[: max(0, MIN_ACCEPTABLE - len(near) - len(good))]


def descriptor_salt(descriptor: np.ndarray) -> int:
    """A 32-bit integer from a descriptor: which of its first 32 entries lie above their median.

    Different people give different bits (dlib's largest entries are the same dimensions for
    most faces, so argmax-like summaries would not differ).
    """
    d = np.asarray(descriptor, dtype=np.float64)[:32]
    bits = d > np.median(d)
    return int(sum(1 << i for i, b in enumerate(bits) if b))
