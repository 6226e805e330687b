"""Identity descriptors with dlib's face recognition ResNet (128-d, LFW 99.38%).

dlib's rule of thumb: two faces whose descriptors are less than 0.6 apart (Euclidean) are the
same person. imnkit uses the distance to check that the Mask face is *not* the protected
person (distance >= 0.6) and that pool identities differ from each other.
"""

from __future__ import annotations

import numpy as np

from imnkit.errors import UsageError
from imnkit.face import models
from imnkit.face.detect import Face, check_image, make_face

SAME_PERSON_THRESHOLD = 0.6


def _shape(landmarks: np.ndarray, box: tuple[int, int, int, int]):
    import dlib

    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise UsageError(f"identity needs 68 landmarks, got shape {tuple(lm.shape)}")
    y0, x0, y1, x1 = box
    rect = dlib.rectangle(int(x0), int(y0), int(x1) - 1, int(y1) - 1)
    parts = [dlib.point(int(round(x)), int(round(y))) for x, y in lm]
    return dlib.full_object_detection(rect, parts)


def face_descriptor(image: np.ndarray, face: Face, *, jitters: int = 0) -> np.ndarray:
    """128-d float32 descriptor of ``face`` in ``image`` (HxWx3 uint8 RGB).

    ``jitters`` > 0 averages over that many randomly jittered crops (slower, slightly more
    stable; dlib seeds the jitter, so the result is still deterministic).
    """
    image = check_image(image)
    shape = _shape(face.landmarks, face.box)
    desc = models.recognition_model().compute_face_descriptor(image, shape, int(jitters))
    return np.asarray(desc, dtype=np.float32)


def pool_face_descriptor(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Descriptor of an aligned face image (a pool identity), the face box the landmarks' bounds."""
    lo, hi = np.min(landmarks, axis=0), np.max(landmarks, axis=0)
    box = (int(lo[1]), int(lo[0]), int(hi[1]) + 1, int(hi[0]) + 1)
    return face_descriptor(np.ascontiguousarray(image), make_face(landmarks, box))


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (< 0.6: same person, per dlib)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def identity_distance(img_a: np.ndarray, face_a: Face, img_b: np.ndarray, face_b: Face) -> float:
    """Euclidean distance between the dlib descriptors of two faces (< 0.6: same person)."""
    return descriptor_distance(face_descriptor(img_a, face_a), face_descriptor(img_b, face_b))
