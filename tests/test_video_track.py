"""Following a face from frame to frame (imnkit.video.track) lands its landmarks where they are."""

from __future__ import annotations

import numpy as np
import pytest

from _photos import photo
from imnkit.face.detect import detect_faces
from imnkit.video.track import follow


@pytest.mark.parametrize("name", ["portrait_01.jpg", "portrait_05.png"])
def test_follow_from_a_head_box_keeps_the_landmarks(name):
    # A track born from CenterFace carries its head box (higher and larger than dlib's); fitted in
    # that box, the 68 points put the mouth on the nose. Followed, they must stay on the face.
    image = photo(name)
    face = detect_faces(image).faces[0]
    y0, x0, y1, x1 = face.box
    h = y1 - y0
    head = (y0 - h // 3, x0 - h // 8, y1 + h // 10, x1 + h // 8)  # like CenterFace's head box
    found = follow(image, face.landmarks, head)
    assert found is not None
    err = np.sqrt(((found[0] - face.landmarks) ** 2).sum(axis=1)).mean()
    eye_mouth = np.linalg.norm(face.points5[[3, 4]].mean(0) - face.points5[[0, 1]].mean(0))
    assert err < 0.1 * eye_mouth, err
