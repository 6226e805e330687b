"""Find faces: dlib HOG detector, 68-point landmarks, 5 points and the ArcFace similarity.

The detector runs on a copy of the photo downscaled to at most ``max_side`` pixels (HOG cost
grows with the pixel count and with each upsampling), and the boxes are mapped back; the
landmark predictor then runs on the full-resolution photo so the landmarks are as precise as
the photo allows.

Coordinates: landmarks are ``(x, y)`` float32 pixels of the photo as given (pixel centres at
integers). Boxes are ``(y0, x0, y1, x1)`` ints with exclusive ends, so ``img[y0:y1, x0:x1]`` is
the box. The affine follows the convention in :mod:`imnkit.face.align` (photo pixel -> 112 px
ArcFace template pixel).

Skipped detections (``Detection.skipped``, each with its reason): boxes smaller than
``min_size``; faces touching the border (a brow/eye/nose/mouth landmark at the edge, or more than
``max_jaw_outside`` jaw points outside the photo: a partial face cannot be swapped convincingly);
a second detection overlapping a better one; dubious landmarks (5 points far from the ArcFace
layout after the similarity fit); low-score HOG boxes that dlib's CNN detector does not confirm
on a crop around them (badges, clocks, hands); faces beyond the ``faces`` selection.

Second detector (``detector="union"``, the default): CenterFace (:mod:`imnkit.face.centerface`,
MIT, shipped) runs on the same photo and finds what the frontal HOG detector misses (profiles,
raised heads, medical masks, small faces). A CenterFace face that overlaps a dlib face is the
same face (dlib's landmarks are kept); any other becomes a face of its own: the 68-point
predictor is run in the box a mean face fitted to CenterFace's 5 points spans, and when its 5
points agree with CenterFace's (``max_point_disagreement``) the face is a normal one
(``treatment="swap"``); otherwise its 68 landmarks are the mean face fitted to the 5 points
and it is marked ``treatment="fallback"``: the swap stage then gives it the best Mask that
works (:mod:`imnkit.face.fallback`). CenterFace faces are never skipped for touching the
border: a partial face is still a face to hide.

Rotation: orientation metadata (EXIF) must be applied by the caller before detection. With
``try_rotations=True`` (the default) a photo where nothing is found upright is tried rotated by
90, 270 and 180 degrees; the first rotation that yields faces wins and their landmarks are
mapped back to the unrotated photo (so the affine includes the rotation).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from imnkit.errors import UsageError
from imnkit.face import models
from imnkit.face.centerface import CenterFaceHit, detect_centerface_multiscale
from imnkit.face.align import ARCFACE_TEMPLATE, alignment_error, apply_affine, five_points, template_affine

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), exclusive ends

# Reasons a detection is not returned as a face.
REASON_SMALL = "smaller than min_size"
REASON_BORDER = "touches the image border"
REASON_DUBIOUS = "dubious landmarks (far from a face layout)"
REASON_DUPLICATE = "overlaps a better detection"
REASON_UNCONFIRMED = "low score not confirmed by the CNN detector"
REASON_NOT_SELECTED = "not among the selected faces"

# How a face is to be masked (Face.treatment).
TREATMENT_SWAP = "swap"  # 68 dlib landmarks: the natural classical swap
TREATMENT_FALLBACK = "fallback"  # landmarks fitted from 5 points: see imnkit.face.fallback


@dataclass(frozen=True, eq=False)
class Face:
    """One face: detector box and score, 68 landmarks, 5 points and the ArcFace affine."""

    box: Box
    score: float
    landmarks: np.ndarray  # (68, 2) float32, (x, y) photo pixels
    points5: np.ndarray  # (5, 2) float32: image-left eye, image-right eye, nose tip, mouth corners
    affine: np.ndarray  # (2, 3) float32, photo pixel -> 112 px ArcFace template pixel
    rotation: int = 0  # degrees counter-clockwise the photo was turned for detection (0/90/180/270)
    treatment: str = TREATMENT_SWAP  # TREATMENT_SWAP, or TREATMENT_FALLBACK when 68 landmarks could not be fitted
    source: str = "dlib"  # which detector found it: "dlib" or "centerface"

    @property
    def size(self) -> int:
        """Side of the detector box in photo pixels (the larger of width and height)."""
        y0, x0, y1, x1 = self.box
        return max(y1 - y0, x1 - x0)


@dataclass(frozen=True, eq=False)
class SkippedFace:
    """A detection that is not returned as a face, and why."""

    box: Box
    score: float
    reason: str
    landmarks: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Detection:
    """What :func:`detect_faces` found: faces (largest first) and skipped detections."""

    faces: list[Face]
    skipped: list[SkippedFace] = field(default_factory=list)
    rotation: int = 0  # rotation that found the faces
    scale: float = 1.0  # working-resolution scale the detector ran at


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check the HxWx3 uint8 RGB contract; return a C-contiguous view (dlib needs one)."""
    if not isinstance(image, np.ndarray):
        raise UsageError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise UsageError(
            f"{name} must be an HxWx3 uint8 RGB array, got shape {tuple(image.shape)} "
            f"dtype {image.dtype}",
            hint="convert grey or RGBA photos to RGB first",
        )
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise UsageError(f"{name} is too small for face detection: shape {tuple(image.shape)}")
    return np.ascontiguousarray(image)


def _landmarks(image: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    import dlib

    rect = dlib.rectangle(int(round(left)), int(round(top)), int(round(right)), int(round(bottom)))
    shape = models.shape_predictor()(image, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def fit_landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """Run the 68-point predictor inside ``box`` (e.g. to re-measure a swapped face)."""
    image = check_image(image)
    y0, x0, y1, x1 = box
    return _landmarks(image, x0, y0, x1 - 1, y1 - 1)


def make_face(landmarks: np.ndarray, box: Box, score: float = 0.0, rotation: int = 0,
              treatment: str = TREATMENT_SWAP, source: str = "dlib") -> Face:
    """Build a :class:`Face` (5 points and affine) from 68 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float32)
    p5 = five_points(lm)
    return Face(box=box, score=float(score), landmarks=lm, points5=p5,
                affine=template_affine(p5), rotation=rotation, treatment=treatment, source=source)


@functools.lru_cache(maxsize=1)
def _mean_landmarks() -> np.ndarray:
    from imnkit.face.identities import load_pool

    shapes = [apply_affine(template_affine(five_points(i.landmarks)), i.landmarks) for i in load_pool()]
    return np.mean(shapes, axis=0).astype(np.float32)


def landmarks_from_points5(points5: np.ndarray) -> np.ndarray:
    """68 landmarks of the mean face fitted to 5 points (eyes, nose tip, mouth corners).

    The fit is a least-squares affine, not a similarity, so a turned or raised head's
    foreshortening (eyes closer together, nose off the eye-mouth midline) is followed.
    """
    mean = _mean_landmarks().astype(np.float64)
    p5 = np.asarray(points5, dtype=np.float64)
    a = np.c_[ARCFACE_TEMPLATE.astype(np.float64), np.ones(5)]
    m, *_ = np.linalg.lstsq(a, p5, rcond=None)
    return (np.c_[mean, np.ones(len(mean))] @ m).astype(np.float32)


def _rotate_back(points: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Map (x, y) points of ``np.rot90(img, k)`` back to pixels of ``img`` (shape = img's H, W)."""
    h, w = shape
    x, y = points[:, 0], points[:, 1]
    if k == 1:
        out = np.stack([w - 1 - y, x], axis=1)
    elif k == 2:
        out = np.stack([w - 1 - x, h - 1 - y], axis=1)
    elif k == 3:
        out = np.stack([y, h - 1 - x], axis=1)
    else:
        out = np.stack([x, y], axis=1)
    return out.astype(np.float32)


def _box_of(points: np.ndarray, shape: tuple[int, int]) -> Box:
    h, w = shape
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
    return (max(0, int(y0)), max(0, int(x0)), min(h, int(y1)), min(w, int(x1)))


def _verified(img: np.ndarray, left: float, top: float, right: float, bottom: float) -> bool:
    """Confirm a doubtful HOG box with dlib's CNN (MMOD) detector on a small crop around it.

    The crop is twice the box side, resampled to ``_VERIFY_CROP`` px so the face is ~100 px
    (the CNN's comfortable size) whatever the photo's size; the CNN must find a face at about
    the same place and scale (IoU >= 0.3). Costs ~0.15 s per doubtful box on one CPU core.
    """
    out = _VERIFY_CROP
    side = max(right - left, bottom - top) + 1
    cx, cy = (left + right) / 2, (top + bottom) / 2
    z = out / (2 * side)
    m = np.array([[z, 0, out / 2 - cx * z], [0, z, out / 2 - cy * z]], np.float32)
    flags = cv2.INTER_AREA if z < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(img, m, (out, out), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    q = out / 4  # the candidate box in crop pixels: centred, side out/2
    for det in models.cnn_detector()(crop, 0):
        r = det.rect
        ix = max(0.0, min(r.right(), 3 * q) - max(r.left(), q))
        iy = max(0.0, min(r.bottom(), 3 * q) - max(r.top(), q))
        inter = ix * iy
        union = (r.right() - r.left()) * (r.bottom() - r.top()) + 4 * q * q - inter
        if union > 0 and inter / union >= 0.3:
            return True
    return False


_VERIFY_CROP = 200
_INNER = slice(17, 68)  # brows, nose, eyes, mouth
_INNER_NO_BROWS = slice(27, 68)  # nose, eyes, mouth


def _touches_border(lm: np.ndarray, shape: tuple[int, int], margin: float, max_jaw_outside: int,
                    *, brows_may_leave: bool = False) -> bool:
    """True when a brow (unless ``brows_may_leave``), eye, nose or mouth landmark is within ``margin``
    of the border, or more than ``max_jaw_outside`` jaw points are outside the photo."""
    h, w = shape
    inner = lm[_INNER_NO_BROWS if brows_may_leave else _INNER]
    if (inner[:, 0].min() < margin or inner[:, 1].min() < margin
            or inner[:, 0].max() > w - 1 - margin or inner[:, 1].max() > h - 1 - margin):
        return True
    jaw = lm[:17]
    outside = (jaw[:, 0] < 0) | (jaw[:, 1] < 0) | (jaw[:, 0] > w - 1) | (jaw[:, 1] > h - 1)
    return int(outside.sum()) > max_jaw_outside


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    iy = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ix = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def _detect_once(
    image: np.ndarray,
    k: int,
    *,
    upsample: int,
    threshold: float,
    max_side: int,
    min_size: int,
    border_margin: float,
    max_jaw_outside: int,
    max_alignment_error: float,
    verify_below: float | None,
    centerface: dict | None,
    hog: bool = True,
) -> tuple[list[Face], list[SkippedFace], float]:
    h0, w0 = image.shape[:2]
    img = np.ascontiguousarray(np.rot90(image, k)) if k else image
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    work = img if scale == 1.0 else cv2.resize(
        img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    # CenterFace first: its largest forward pass runs while dlib's landmark predictor is read (the
    # read holds the GIL, the pass does not), once per process.
    hits = None if centerface is None else detect_centerface_multiscale(
        img, threshold=centerface["threshold"], run=models.alongside_shape_predictor)
    rects, scores, _ = models.hog_detector().run(work, upsample, threshold) if hog else ([], [], [])
    order = sorted(range(len(rects)), key=lambda i: -scores[i])  # best first, for de-duplication
    faces: list[Face] = []
    skipped: list[SkippedFace] = []
    for i in order:
        rect, score = rects[i], float(scores[i])
        left, top = rect.left() / scale, rect.top() / scale
        right, bottom = (rect.right() + 1) / scale - 1, (rect.bottom() + 1) / scale - 1
        corners = np.array([[left, top], [right, bottom], [left, bottom], [right, top]], np.float32)
        box = _box_of(_rotate_back(corners, k, (h0, w0)), (h0, w0))
        side = max(right - left, bottom - top) + 1
        if side < min_size:
            skipped.append(SkippedFace(box, score, REASON_SMALL))
            continue
        lm = _rotate_back(_landmarks(img, left, top, right, bottom), k, (h0, w0))
        if _touches_border(lm, (h0, w0), border_margin, max_jaw_outside):
            skipped.append(SkippedFace(box, score, REASON_BORDER, lm))
            continue
        if any(_overlap(box, f.box) > 0.4 for f in faces):
            skipped.append(SkippedFace(box, score, REASON_DUPLICATE, lm))
            continue
        face = make_face(lm, box, score, rotation=90 * k)
        if alignment_error(face.points5, face.affine) > max_alignment_error:
            skipped.append(SkippedFace(box, score, REASON_DUBIOUS, lm))
            continue
        if verify_below is not None and score < verify_below and not _verified(img, left, top, right, bottom):
            skipped.append(SkippedFace(box, score, REASON_UNCONFIRMED, lm))
            continue
        faces.append(face)
    if hits is not None:
        _add_centerface(img, k, (h0, w0), hits, faces, skipped, min_size=min_size,
                        max_alignment_error=max_alignment_error,
                        max_point_disagreement=centerface["max_point_disagreement"])
    return faces, skipped, scale


#: dlib's predictor starts best from a box like its HOG detector's. For a face CenterFace found,
#: that box from its five points: (left, top, right, bottom) offsets from the points' centre in
#: eye-to-mouth distances; medians over 183 faces of permissively licensed training photos
#: (scripts/fit_centerface_box.py; interquartile ranges ~0.22).
HOG_BOX_FROM_POINTS5 = (-1.177, -1.212, 1.169, 1.110)


def hog_like_box(points5: np.ndarray) -> Box:
    """The box (y0, x0, y1, x1, exclusive) dlib's HOG detector would likely give a face with these 5 points."""
    p = np.asarray(points5, dtype=np.float64)
    cx, cy = p.mean(axis=0)
    s = max(float(np.linalg.norm(p[[3, 4]].mean(0) - p[[0, 1]].mean(0))), 1.0)
    l, t, r, b = HOG_BOX_FROM_POINTS5
    return (int(round(cy + t * s)), int(round(cx + l * s)), int(round(cy + b * s)) + 1,
            int(round(cx + r * s)) + 1)


def predictor_box(face: Face) -> Box:
    """The box to fit ``face``'s 68 landmarks in again (e.g. on its Mask): the detector's own box for a
    dlib face, else the HOG-like box of its 5 points (a CenterFace head box or a tracked box sits
    higher and larger than the predictor expects, and a fit in it lands the mouth on the nose)."""
    return face.box if face.source == "dlib" else hog_like_box(face.points5)


def face_in_box(image: np.ndarray, box: Box, points5: np.ndarray | None = None, *,
                max_alignment_error: float = 12.0, max_point_disagreement: float = 0.25) -> Face:
    """A face where a person says there is one (a box of a faces file): never None, never skipped.

    dlib's 68 landmarks are fitted in ``box`` (and in a tighter square inside it, since a box drawn
    by hand is usually a head box, larger than the HOG box the predictor expects; and in the HOG-like
    box of ``points5`` when given); the fit whose 5 points best agree with ``points5`` (without
    them: the smallest alignment error with its 5 points inside ``box``) gives a natural face. When
    no fit is plausible the face is a ``"fallback"`` one: the mean face fitted to ``points5``, or
    to the ArcFace template's 5 points stretched over ``box`` (``source="user"``).
    """
    image = check_image(image)
    y0, x0, y1, x1 = box
    side = min(y1 - y0, x1 - x0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    inner = 0.8 * side  # a head box's face: a little lower than its centre
    tries = [fit_landmarks(image, box),
             _landmarks(image, cx - inner / 2, cy - 0.4 * inner, cx + inner / 2 - 1, cy + 0.6 * inner - 1)]
    if points5 is not None:
        tries.append(fit_landmarks(image, hog_like_box(points5)))
    shape = image.shape[:2]

    def error(lm: np.ndarray) -> float:
        p5 = five_points(lm)
        if points5 is not None:
            p = np.asarray(points5, np.float64)
            scale = max(float(np.linalg.norm(p[[3, 4]].mean(0) - p[[0, 1]].mean(0))), 1.0)
            return float(np.sqrt(((p5 - p) ** 2).sum(axis=1).mean())) / scale
        inside = bool(((p5[:, 0] >= x0) & (p5[:, 0] < x1) & (p5[:, 1] >= y0) & (p5[:, 1] < y1)).all())
        return alignment_error(p5, template_affine(p5)) if inside else float("inf")

    errors = [error(t) for t in tries]
    best = tries[int(np.argmin(errors))]
    limit = max_point_disagreement if points5 is not None else max_alignment_error
    face = make_face(best, box, 0.0, source="user")
    if min(errors) <= limit and alignment_error(face.points5, face.affine) <= max_alignment_error \
            and not _touches_border(best, shape, 0.0, 5, brows_may_leave=True):
        return face
    if points5 is None:  # the template's face fills the 112 px crop much as a drawn face box does
        points5 = ARCFACE_TEMPLATE / 112.0 * np.array([x1 - x0, y1 - y0], np.float32) + np.array([x0, y0], np.float32)
    return make_face(landmarks_from_points5(points5), box, 0.0, treatment=TREATMENT_FALLBACK, source="user")


#: Detections scoring under these are doubtful (``"review": true`` in the faces file and ``--json``).
#: dlib's HOG score and CenterFace's heatmap score are on different scales. Measured (docs/review.md):
#: the 108 reference faces score >= 0.256 (dlib) and >= 0.564 (CenterFace; two faces of a photo
#: taken in low light under 0.6), the false faces of the no-face set (motorcycle headlights) 0.567-0.578
#: (CenterFace); dlib's boxes under 0.5 are already confirmed by its CNN detector (``verify_below``).
REVIEW_BELOW = {"dlib": 0.0, "centerface": 0.6}

#: The second look at a doubtful CenterFace face: a crop ``context`` box sides wide resampled to
#: ``size`` px (the face ~43 px, a size CenterFace scores well) and contrast-stretched (1st to 99th
#: percentile: faces in low light score higher), turned as the photo was for detection. Measured:
#: the two real doubtful faces 0.66 / 0.82, the three headlight boxes 0.11-0.14; ``confirm`` sits between.
SECOND_LOOK = {"context": 3.0, "size": 128, "confirm": 0.35}


def is_doubtful(face: Face) -> bool:
    """True for a detection scoring under :data:`REVIEW_BELOW` for its detector (a user's box never is)."""
    limit = REVIEW_BELOW.get(face.source)
    return limit is not None and face.score < limit


def second_look(image: np.ndarray, face: Face) -> float:
    """CenterFace's best score for a face centred on ``face``'s box in a crop around it (:data:`SECOND_LOOK`)."""
    from imnkit.face.centerface import detect_centerface

    k, out = SECOND_LOOK["context"], int(SECOND_LOOK["size"])
    y0, x0, y1, x1 = face.box
    side = max(y1 - y0, x1 - x0, 1)
    z = out / (k * side)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    m = np.array([[z, 0, out / 2 - cx * z], [0, z, out / 2 - cy * z]], np.float32)
    crop = cv2.warpAffine(check_image(image), m, (out, out), flags=cv2.INTER_AREA if z < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    lo, hi = np.percentile(crop, (1, 99))
    crop = np.clip((crop.astype(np.float32) - lo) * (255.0 / max(float(hi - lo), 1.0)), 0, 255).astype(np.uint8)
    crop = np.ascontiguousarray(np.rot90(crop, face.rotation // 90)) if face.rotation else crop
    best = 0.0
    for hit in detect_centerface(crop, threshold=0.05, max_side=out):
        c = (hit.box[:2] + hit.box[2:]) / 2
        if abs(c[0] - out / 2) < out / (2 * k) and abs(c[1] - out / 2) < out / (2 * k):
            best = max(best, hit.score)
    return best


def confirmed(image: np.ndarray, face: Face) -> bool:
    """A face to mask without asking: not doubtful, a doubtful dlib face (its CNN detector confirmed it
    already), or a doubtful CenterFace face its second look confirms."""
    if not is_doubtful(face) or face.source != "centerface":
        return True
    return second_look(image, face) >= SECOND_LOOK["confirm"]


def _add_centerface(
    img: np.ndarray,
    k: int,
    shape: tuple[int, int],
    hits: list[CenterFaceHit],
    faces: list[Face],
    skipped: list[SkippedFace],
    *,
    min_size: int,
    max_alignment_error: float,
    max_point_disagreement: float,
) -> None:
    """Add the CenterFace ``hits`` of ``img`` (the photo turned ``k`` quarter turns) that dlib missed."""
    for hit in hits:
        x0, y0, x1, y1 = (float(v) for v in hit.box)
        corners = np.array([[x0, y0], [x1, y1], [x0, y1], [x1, y0]], np.float32)
        box = _box_of(_rotate_back(corners, k, shape), shape)
        side = max(x1 - x0, y1 - y0)
        if side < min_size:
            if not any(_overlap(box, k.box) > 0.4 for k in skipped):  # dlib may have said so already
                skipped.append(SkippedFace(box, hit.score, REASON_SMALL))
            continue
        if any(_overlap(box, f.box) > 0.4 for f in faces):
            continue  # the same face as a dlib one (or a better CenterFace one)
        mean68 = landmarks_from_points5(hit.points5)  # in the turned photo
        lo, hi = mean68.min(axis=0), mean68.max(axis=0)
        # Started from a HOG-like box and from the mean face's extent: the fit that agrees best
        # with CenterFace's own five points is kept (3 ms each).
        tries = [fit_landmarks(img, hog_like_box(hit.points5)), _landmarks(img, lo[0], lo[1], hi[0], hi[1])]
        # Relative to the eye-mouth scale, so a profile's crowded points count as much as a frontal face's.
        scale = max(float(np.linalg.norm(hit.points5[[3, 4]].mean(0) - hit.points5[[0, 1]].mean(0))), 1.0)
        errors = [float(np.sqrt(((five_points(t) - hit.points5) ** 2).sum(axis=1).mean())) / scale for t in tries]
        disagree = min(errors)
        lm = tries[errors.index(disagree)]
        lm_photo = _rotate_back(lm, k, shape)
        face = make_face(lm_photo, box, hit.score, rotation=90 * k, source="centerface")
        # A forehead cut by the frame (brows outside, eyes in) still takes the natural swap: the
        # Mask is clipped at the border like the face (a video's faces often are).
        inside = not _touches_border(lm_photo, shape, 0.0, 5, brows_may_leave=True)
        if (disagree > max_point_disagreement or not inside
                or alignment_error(face.points5, face.affine) > max_alignment_error):
            face = make_face(_rotate_back(mean68, k, shape), box, hit.score, rotation=90 * k,
                             treatment=TREATMENT_FALLBACK, source="centerface")
        faces.append(face)


def detect_faces(
    image: np.ndarray,
    *,
    upsample: int = 1,
    threshold: float = -0.3,
    min_size: int = 32,
    faces: Literal["all", "largest"] | int = "all",
    max_side: int = 1024,
    border_margin: float = 0.0,
    max_jaw_outside: int = 5,
    max_alignment_error: float = 12.0,
    verify_below: float | None = 0.5,
    try_rotations: bool = True,
    detector: Literal["dlib", "union", "centerface"] = "union",
    centerface_threshold: float = 0.5,
    max_point_disagreement: float = 0.25,
) -> Detection:
    """Detect faces in an HxWx3 uint8 RGB photo.

    Args:
        upsample: detector upsampling passes on the working image (each finds faces half as
            big, at ~4x the cost). HOG's window is 80 px, so with ``upsample=1`` faces down to
            about 40 px of the working image are found.
        threshold: dlib ``adjust_threshold``; HOG detections scoring above it are candidates
            (negative finds more faces; doubtful ones are then confirmed, see ``verify_below``).
        min_size: smallest detector box side, in photo pixels, that is returned as a face.
        faces: ``"all"``, ``"largest"``, or an int N for the N largest.
        max_side: longest side of the working image the detector runs on (speed bound).
        border_margin: a face with a brow, eye, nose or mouth landmark closer than this to the
            border is skipped as touching it ...
        max_jaw_outside: ... and so is one with more than this many of its 17 jaw-line points
            outside the photo (a chin just cut by the frame, as in aligned crops, is kept).
        max_alignment_error: RMS error (112 px template pixels) of the 5 points after the
            similarity fit above which landmarks are called dubious and the face skipped.
        verify_below: HOG candidates scoring below this must be confirmed by dlib's CNN
            detector on a crop around them (removes badges, clocks, hands); None turns it off.
        try_rotations: when nothing is found upright, try the photo turned by 90/270/180.
        detector: ``"union"`` adds CenterFace's faces to dlib's (see the module docstring);
            ``"dlib"`` is dlib's HOG detector alone; ``"centerface"`` is CenterFace alone (dlib
            still gives the 68 landmarks).
        centerface_threshold: CenterFace heatmap score a face needs (0.5: no false positive
            on the no-face photos of ``../shared/data/faces``).
        max_point_disagreement: RMS distance between the 5 points of dlib's 68 landmarks and
            CenterFace's, over the eye-to-mouth distance, above which the 68 landmarks are not
            trusted and the face is a ``"fallback"`` one.

    Returns:
        :class:`Detection` with faces sorted largest first (ties top-to-bottom, left-to-right)
        and skipped detections with their reasons.
    """
    image = check_image(image)
    if upsample < 0 or upsample > 3:
        raise UsageError(f"upsample must be 0..3, got {upsample}")
    if max_side < 64:
        raise UsageError(f"max_side must be at least 64 px, got {max_side}")
    if isinstance(faces, bool) or not (faces in ("all", "largest") or (isinstance(faces, int) and faces >= 1)):
        raise UsageError(f"faces must be 'all', 'largest' or a positive int, got {faces!r}")
    if detector not in ("dlib", "union", "centerface"):
        raise UsageError(f"detector must be 'dlib', 'union' or 'centerface', got {detector!r}")
    cf = (dict(threshold=centerface_threshold, max_point_disagreement=max_point_disagreement)
          if detector != "dlib" else None)
    opts = dict(upsample=upsample, threshold=threshold, max_side=max_side, min_size=min_size,
                border_margin=border_margin, max_jaw_outside=max_jaw_outside,
                max_alignment_error=max_alignment_error, verify_below=verify_below, centerface=cf,
                hog=detector != "centerface")
    found, skipped, scale = _detect_once(image, 0, **opts)
    rotation = 0
    if try_rotations and not _natural(found):
        # Nothing found upright, or only faces dlib could not landmark (a sideways face is
        # found by CenterFace but not by dlib): a turn that gives natural faces is preferred.
        for k in (1, 3, 2):  # quarter turns first: the commonest wrong orientations
            f, s, sc = _detect_once(image, k, **opts)
            if _natural(f) or (f and not found):
                found, skipped, scale, rotation = f, s, sc, 90 * k
            if _natural(found):
                break
    found.sort(key=lambda f: (-(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), f.box[0], f.box[1]))
    keep = len(found) if faces == "all" else 1 if faces == "largest" else int(faces)
    for f in found[keep:]:
        skipped.append(SkippedFace(f.box, f.score, REASON_NOT_SELECTED, f.landmarks))
    return Detection(faces=found[:keep], skipped=skipped, rotation=rotation, scale=scale)


def _natural(faces: list[Face]) -> bool:
    """True when there are faces and all of them have dlib's 68 landmarks."""
    return bool(faces) and all(f.treatment == TREATMENT_SWAP for f in faces)
