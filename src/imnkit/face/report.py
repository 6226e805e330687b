"""Identity distances between the faces of two photos (``imnkit metrics A B --identity``).

Faces are found in A; each is matched to the detection in B that overlaps it most (IoU >= 0.3).
A face not found in B (a good Mask can fool the detector too) is measured at A's landmarks, which
is sound for imnkit's outputs because the Mask keeps the face's pose and position; the report says
which was used. Distances come from dlib's ResNet descriptor, a recogniser independent of the swap:
< 0.6 means the same person.
"""

from __future__ import annotations

import numpy as np

from .detect import detect_faces
from .descriptors import SAME_PERSON_THRESHOLD, face_descriptor, descriptor_distance


def _iou(a, b) -> float:
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, y1 - y0) * max(0, x1 - x0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def identity_report(img_a: np.ndarray, img_b: np.ndarray, faces_a=None) -> list[dict]:
    """One entry per face of A: box, distance to B's face, same_person, and how B's face was located."""
    faces_a = detect_faces(img_a).faces if faces_a is None else faces_a
    faces_b = detect_faces(img_b).faces if faces_a else []
    out = []
    for i, fa in enumerate(faces_a):
        best = max(faces_b, key=lambda fb: _iou(fa.box, fb.box), default=None)
        matched = best is not None and _iou(fa.box, best.box) >= 0.3
        fb = best if matched else fa
        d = descriptor_distance(face_descriptor(img_a, fa), face_descriptor(img_b, fb))
        out.append({"face": i, "box": list(fa.box), "distance": round(d, 4),
                    "same_person": d < SAME_PERSON_THRESHOLD, "located_in_b": "detected" if matched else "landmarks of A"})
    return out
