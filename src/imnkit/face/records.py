"""Faces in a bundle: the tensors the align stage writes and the swap reads back as Face records.

Tensors (N faces, largest first): ``faces.boxes`` int64 (N, 4) y0, x0, y1, x1 (exclusive ends),
``faces.scores`` float32 (N,), ``faces.landmarks`` float32 (N, 68, 2), ``faces.points5`` float32
(N, 5, 2), ``faces.affine`` float32 (N, 2, 3). Meta read back: ``faces.rotation``,
``faces.treatment`` and ``faces.source`` (per face; "swap" and "dlib" when absent).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from imnkit.bundle import Bundle
from imnkit.face.detect import Face


def store_faces(bundle: Bundle, faces: Sequence[Face]) -> None:
    """Add the five ``faces.*`` tensors of ``faces`` to ``bundle`` (empty (0, ...) tensors for none)."""
    n = len(faces)
    bundle.add("faces.boxes", np.array([list(f.box) for f in faces], dtype=np.int64).reshape(n, 4))
    bundle.add("faces.scores", np.array([f.score for f in faces], dtype=np.float32).reshape(n))
    bundle.add("faces.landmarks", _stack([f.landmarks for f in faces], (68, 2)))
    bundle.add("faces.points5", _stack([f.points5 for f in faces], (5, 2)))
    bundle.add("faces.affine", _stack([f.affine for f in faces], (2, 3)))


def _stack(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    if not arrays:
        return np.zeros((0, *shape), dtype=np.float32)
    return np.stack([np.asarray(a, dtype=np.float32) for a in arrays])


def load_faces(bundle: Bundle) -> list[Face]:
    """The Face records :func:`store_faces` (and the align stage's meta) put in ``bundle``."""
    boxes = bundle.require("faces.boxes").tolist()
    scores = bundle.require("faces.scores").tolist()
    lms = np.asarray(bundle.require("faces.landmarks"))
    p5 = np.asarray(bundle.require("faces.points5"))
    aff = np.asarray(bundle.require("faces.affine"))
    rotation = int(bundle.meta.get("faces.rotation", 0))
    treatment = list(bundle.meta.get("faces.treatment", [])) or ["swap"] * len(boxes)
    source = list(bundle.meta.get("faces.source", [])) or ["dlib"] * len(boxes)
    return [Face(box=tuple(int(v) for v in boxes[i]), score=float(scores[i]), landmarks=lms[i], points5=p5[i],
                 affine=aff[i], rotation=rotation, treatment=treatment[i], source=source[i])
            for i in range(len(boxes))]
