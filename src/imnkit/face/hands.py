"""Hands in a photo: MediaPipe's palm detector and hand landmark model, run with OpenCV's dnn.

A hand in front of a face (holding a mic to the mouth, a chin on a fist) is skin-coloured, so the
colour segmentation of :mod:`imnkit.face.occlusion` cannot tell it from the face; these two small
models find it: the palm detector (an SSD over 192x192 px) gives a palm box and 7 points, a
square crop turned so the fingers point up is cut around it, and the landmark model gives the
hand's 21 points and a presence score on that 224x224 crop.

Model files (``imnkit/weights/``, registered in the weights catalog with their sha256, checked
once per process before the file is read): ``palm_detection_full.tflite`` (2.3 MB) and
``hand_landmark_full.tflite`` (5.5 MB), unchanged from the ``mediapipe`` 0.10.14 wheel on PyPI
(``mediapipe/modules/palm_detection/`` and ``mediapipe/modules/hand_landmark/``;
https://github.com/google/mediapipe, Apache License 2.0). Paper: Zhang et al., "MediaPipe
Hands: On-device Real-time Hand Tracking" (2020), arXiv:2006.10214.

Network contracts (read from the graphs and checked on photos): inputs are float32 NCHW RGB in
[0, 1] (OpenCV's importer takes NCHW). Palm: ``Identity`` (1, 2016, 18) box centre offset,
size and 7 points in input pixels relative to an anchor, ``Identity_1`` (1, 2016, 1) score
logits; anchors from 4 layers of strides 8, 16, 16, 16, 2 per cell, fixed size, centred in
their cells. Landmarks: ``Identity`` (1, 63) 21 points (x, y, z) in crop pixels,
``Identity_1`` (1, 1) hand presence probability, ``Identity_2`` (1, 1) handedness.

Coordinates: points are (x, y) float photo pixels; the 21 points are MediaPipe's order (0 wrist,
1-4 thumb, 5-8 index, 9-12 middle, 13-16 ring, 17-20 little finger, base to tip).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from imnkit.errors import WeightsError
from imnkit.weights import read_pinned

PALM_WEIGHTS = "palm_detection.full"
LANDMARK_WEIGHTS = "hand_landmark.full"
_PALM_SIZE = 192
_LM_SIZE = 224
#: Finger chains (base to tip) of the 21 points; the palm is the hull of _PALM.
FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
PALM = (0, 1, 2, 5, 9, 13, 17)


@dataclass(frozen=True, eq=False)
class Hand:
    """One hand in photo pixels."""

    points: np.ndarray  # (21, 2) float32 (x, y)
    score: float  # the landmark model's hand presence, in [0, 1]
    palm_score: float  # the palm detector's score, in [0, 1]


_THREAD = threading.local()


def _net(name: str) -> cv2.dnn.Net:
    """This thread's network of model ``name``.

    One net per model and thread: both models take one fixed input size, so the shapes OpenCV
    fixes at the first forward pass stay right; and an OpenCV net is not safe to share between
    threads (measured: video frames masked on two threads got hand points 10^8 px away with
    presence up to 0.98 from one shared net).
    """
    nets = _THREAD.__dict__.setdefault("nets", {})
    if name not in nets:
        nets[name] = _read_net(name)
    return nets[name]


def _read_net(name: str) -> cv2.dnn.Net:
    data = np.frombuffer(read_pinned(name), np.uint8)
    try:
        return cv2.dnn.readNetFromTFLite(data)
    except (AttributeError, cv2.error):  # OpenCV before 4.10 lacks the importer or an operator
        raise WeightsError(f"OpenCV {cv2.__version__} cannot run the hand model {name}",
                           hint="pip install 'opencv-python-headless>=4.10', or --set swap.occlusion_hands=false") from None


@functools.lru_cache(maxsize=1)
def _anchors() -> np.ndarray:
    """(2016, 2) anchor centres in palm-input pixels: 24x24 cells x 2, then 12x12 cells x 6."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = _PALM_SIZE // stride
        ys, xs = np.mgrid[:n, :n]
        c = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1) * stride
        out.append(np.repeat(c, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -100.0, 100.0)))  # float64: no overflow


def _blob(crop: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(crop.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)


def _palms(image: np.ndarray, square: tuple[float, float, float], threshold: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Palm detections in the square (cx, cy, side) of the photo: (score, box (4,) x0 y0 x1 y1, points (7, 2)), photo pixels.

    Outside the photo the square is black (as MediaPipe's letterbox).
    """
    cx, cy, side = square
    k = side / _PALM_SIZE  # photo pixels per input pixel
    src, z = image, 1.0
    if k > 1.5:
        # Shrink with pixel averaging first: warpAffine samples bilinearly, which aliases
        # (skin texture, hair) when it shrinks several times.
        z = 1.0 / k
        src = cv2.resize(image, (max(1, round(image.shape[1] * z)), max(1, round(image.shape[0] * z))),
                         interpolation=cv2.INTER_AREA)
    to_src = np.array([[k * z, 0, (cx - side / 2) * z], [0, k * z, (cy - side / 2) * z]], np.float64)
    crop = cv2.warpAffine(src, to_src, (_PALM_SIZE, _PALM_SIZE), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    net = _net(PALM_WEIGHTS)
    net.setInput(_blob(crop))
    reg, logit = net.forward(["Identity", "Identity_1"])
    scores = _sigmoid(logit[0, :, 0])
    idx = np.nonzero(scores > threshold)[0]
    corner = np.array([cx - side / 2, cy - side / 2])
    found = []
    for i in idx[np.argsort(-scores[idx])]:
        # Offsets from the anchor's centre and the box size, in input pixels (anchors of size 1).
        r, anchor = reg[0, i].astype(np.float64), _anchors()[i]
        centre = anchor + r[0:2]
        box = np.concatenate([(centre - r[2:4] / 2) * k + corner, (centre + r[2:4] / 2) * k + corner])
        found.append((float(scores[i]), box, (anchor + r[4:18].reshape(7, 2)) * k + corner))
    return found


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _suppress(dets: list, iou: float = 0.3) -> list:
    """Greedy non-maximum suppression, best score first."""
    kept: list = []
    for d in sorted(dets, key=lambda d: -d[0]):
        if all(_iou(d[1], k[1]) < iou for k in kept):
            kept.append(d)
    return kept


def _hand_crop(box: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """2x3 affine map from landmark-crop pixels to photo pixels, the fingers pointing up in the crop.

    As MediaPipe's palm-to-hand rectangle: turned by the wrist (point 0) to middle-finger base
    (point 2) direction, moved half a palm towards the fingers, 2.6 palm sizes across.
    """
    u = pts[2] - pts[0]
    u = u / max(1e-6, float(np.hypot(*u)))
    x_axis, y_axis = np.array([-u[1], u[0]]), -u
    w, h = box[2] - box[0], box[3] - box[1]
    centre = (box[:2] + box[2:]) / 2 - 0.5 * h * y_axis
    k = 2.6 * max(w, h) / _LM_SIZE
    origin = centre - (x_axis + y_axis) * k * _LM_SIZE / 2
    return np.array([[x_axis[0] * k, y_axis[0] * k, origin[0]], [x_axis[1] * k, y_axis[1] * k, origin[1]]])


def _refined_crop(points: np.ndarray) -> np.ndarray:
    """2x3 crop map from a first landmark pass (as MediaPipe's tracking rectangle).

    Turned by the wrist to the middle of the index, middle and ring bases, around the hand's
    points without the finger tips' outliers, 2 sizes across, moved a little towards the wrist.
    """
    part = points[[0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18]].astype(np.float64)
    top = (points[[5, 9, 13]].astype(np.float64)).mean(0)
    u = top - points[0]
    u = u / max(1e-6, float(np.hypot(*u)))
    x_axis, y_axis = np.array([-u[1], u[0]]), -u
    a, b = part @ x_axis, part @ y_axis
    centre_ab = np.array([(a.min() + a.max()) / 2, (b.min() + b.max()) / 2])
    size = max(a.max() - a.min(), b.max() - b.min())
    centre = centre_ab[0] * x_axis + centre_ab[1] * y_axis - 0.1 * size * y_axis
    k = 2.0 * size / _LM_SIZE
    origin = centre - (x_axis + y_axis) * k * _LM_SIZE / 2
    return np.array([[x_axis[0] * k, y_axis[0] * k, origin[0]], [x_axis[1] * k, y_axis[1] * k, origin[1]]])


def _landmarks(image: np.ndarray, to_photo: np.ndarray) -> tuple[np.ndarray, float]:
    """(21, 2) photo points and the hand presence score on the crop ``to_photo`` maps."""
    crop = cv2.warpAffine(image, to_photo, (_LM_SIZE, _LM_SIZE), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    net = _net(LANDMARK_WEIGHTS)
    net.setInput(_blob(crop))
    lms, presence = net.forward(["Identity", "Identity_1"])
    xy = lms[0].reshape(21, 3)[:, :2].astype(np.float64)
    pts = xy @ to_photo[:, :2].T + to_photo[:, 2]
    box = _crop_box(to_photo)
    grow = 0.5 * (box[2:] - box[:2])
    if not np.isfinite(pts).all() or (pts < box[:2] - grow).any() or (pts > box[2:] + grow).any():
        return np.zeros((21, 2), np.float32), 0.0  # not a reading of a hand in the crop: never kept
    return pts.astype(np.float32), float(presence[0, 0])  # already a probability (measured: 0..1)


def _crop_box(to_photo: np.ndarray) -> np.ndarray:
    """(4,) x0, y0, x1, y1 photo box around the landmark crop ``to_photo`` maps."""
    corners = np.array([[0, 0], [_LM_SIZE, 0], [0, _LM_SIZE], [_LM_SIZE, _LM_SIZE]], np.float64)
    pts = corners @ to_photo[:, :2].T + to_photo[:, 2]
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def _touches(points: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> bool:
    """True when the hand's points, grown by its palm's size, meet one of the boxes (y0, x0, y1, x1)."""
    grow = float(np.hypot(*(points[9] - points[0])))
    lo, hi = points.min(axis=0) - grow, points.max(axis=0) + grow
    return any(lo[0] < x1 and hi[0] > x0 and lo[1] < y1 and hi[1] > y0 for y0, x0, y1, x1 in boxes)


def find_hands(image: np.ndarray, squares: list[tuple[float, float, float]] | None = None, *,
               near: list[tuple[int, int, int, int]] | None = None, palm_threshold: float = 0.5,
               presence_threshold: float = 0.5, refine: bool = True) -> list[Hand]:
    """Hands in an HxWx3 uint8 RGB photo, best presence first.

    The palm detector runs on each square (cx, cy, side) in photo pixels (default: one square
    over the whole photo); palms found twice are merged. With ``near`` (boxes y0, x0, y1, x1),
    palms whose hand crop meets none of the boxes are dropped before the landmark model runs
    (35 ms each), and hands whose points do not come near them after its first pass. A hand is
    kept when its palm scores over ``palm_threshold`` and the landmark model's presence over
    ``presence_threshold``; the palm score alone is not enough (a profile face scores 0.97 as a
    palm, and 0.05 as a hand; real hands 0.98-1.0). With ``refine``, the landmarks are run
    again on the crop the first pass's points give (MediaPipe's tracking step): on a fist the
    fingers and thumb come out spread along the hand, not bunched at the palm.
    """
    h, w = image.shape[:2]
    if squares is None:
        squares = [(w / 2, h / 2, float(max(h, w)))]
    palms = _suppress([d for sq in squares for d in _palms(image, sq, palm_threshold)])
    hands = []
    for score, box, pts in palms:
        crop = _hand_crop(box, pts)
        if near is not None:
            cb = _crop_box(crop)
            if not any(cb[0] < x1 and cb[2] > x0 and cb[1] < y1 and cb[3] > y0 for y0, x0, y1, x1 in near):
                continue
        points, presence = _landmarks(image, crop)
        if near is not None and not _touches(points, near):
            continue
        if refine and presence > 0.5 * presence_threshold:
            points, presence = _landmarks(image, _refined_crop(points))
        if presence > presence_threshold:
            hands.append(Hand(points=points, score=presence, palm_score=score))
    return sorted(hands, key=lambda hd: -hd.score)


def _fixed(pts: np.ndarray) -> np.ndarray:
    """Points with 4 fractional bits, for OpenCV's drawing with ``shift=4``."""
    return np.round(pts * 16).astype(np.int32)


def hand_region(hands: list[Hand], box: tuple[int, int, int, int]) -> np.ndarray | None:
    """Soft (h, w) float32 alpha in [0, 1] of the hands over ``box`` (y0, x0, y1, x1, photo pixels), or None.

    Each hand is the hull of its palm points and each finger's hull, grown by half a finger
    width (the mean spacing of the four finger bases), feathered by a fifth of that width. No margin
    past the fingers: what lies around them is the face, and its pixels must not come back.
    """
    y0, x0, y1, x1 = box
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    widths = []
    for hand in hands:
        pts = hand.points.astype(np.float64) - [x0, y0]
        bases = pts[[5, 9, 13, 17]]
        width = float(np.mean(np.hypot(*(bases[1:] - bases[:-1]).T)))
        lo, hi = pts.min(axis=0) - width, pts.max(axis=0) + width
        if hi[0] < 0 or hi[1] < 0 or lo[0] > mask.shape[1] or lo[1] > mask.shape[0]:
            continue
        widths.append(width)
        # The points are the joints, inside the bones: the skin lies half a finger beyond them.
        # A hull grown so: a straight finger is its segments drawn one finger wide, a curled one
        # (a fist) is filled inside the curl, and the palm reaches past the knuckles.
        for chain in (PALM, *FINGERS):
            hull = cv2.convexHull(_fixed(pts[list(chain)]))
            cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_8, shift=4)
            cv2.polylines(mask, [hull], True, 1.0, thickness=max(1, round(width)), lineType=cv2.LINE_8, shift=4)
    if not widths or mask.max() == 0:
        return None
    alpha = cv2.GaussianBlur(mask, (0, 0), max(0.7, 0.2 * min(widths)))
    alpha[alpha < 1.0 / 512] = 0.0
    return np.clip(alpha, 0.0, 1.0)
