"""Face detection on the real photos of shared/data/faces (skipped when shared/ is absent)."""

from __future__ import annotations


import numpy as np
import pytest

from imnkit.errors import UsageError
from imnkit.face.align import ARCFACE_TEMPLATE, alignment_error, apply_affine
from imnkit.face.detect import (
    REASON_BORDER,
    REASON_NOT_SELECTED,
    REASON_SMALL,
    REASON_UNCONFIRMED,
    detect_faces,
)


from _photos import faces_dir as _faces_dir, photo


def _check_five_points(face, shape):
    le, re_, nose, ml, mr = face.points5
    assert le[0] < re_[0], "image-left eye is left of the image-right eye"
    assert max(le[1], re_[1]) < nose[1] < min(ml[1], mr[1]), "eyes above nose above mouth"
    assert ml[0] < mr[0]
    assert le[0] < nose[0] < re_[0]
    y0, x0, y1, x1 = face.box
    h, w = shape[:2]
    assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    assert face.affine.shape == (2, 3) and face.affine.dtype == np.float32


@pytest.mark.parametrize("name", ["portrait_01.jpg", "portrait_03.png", "portrait_08.jpg", "portrait_12_gray.png"])
def test_portrait_has_exactly_one_sane_face(name):
    img = photo(name)
    det = detect_faces(img)
    assert len(det.faces) == 1
    face = det.faces[0]
    _check_five_points(face, img.shape)
    # The similarity maps the 5 points close to the ArcFace template (RMS and worst point, px).
    assert alignment_error(face.points5, face.affine) < 7.0
    err = np.linalg.norm(apply_affine(face.affine, face.points5) - ARCFACE_TEMPLATE, axis=1)
    assert err.max() < 12.0


def test_no_face_photos_give_no_faces():
    d = _faces_dir()
    names = sorted(p.name for p in d.glob("noface_*"))
    assert len(names) >= 5
    for name in names:
        assert detect_faces(photo(name)).faces == [], name


@pytest.mark.parametrize("name,count", [("multi_01.jpg", 2), ("multi_03.jpg", 3), ("multi_06.jpg", 6)])
def test_group_photos_give_several_faces(name, count):
    img = photo(name)
    det = detect_faces(img)
    assert len(det.faces) == count
    sizes = [f.size for f in det.faces]
    assert sizes == sorted(sizes, reverse=True), "largest first"
    for f in det.faces:
        _check_five_points(f, img.shape)


def test_badges_are_rejected_by_the_cnn_check():
    # The astronaut portrait has mission patches that HOG scores as faces.
    det = detect_faces(photo("portrait_02.png"))
    assert len(det.faces) == 1
    assert any(s.reason == REASON_UNCONFIRMED for s in det.skipped)
    assert len(detect_faces(photo("portrait_02.png"), verify_below=None).faces) > 1


def test_face_cut_by_the_border_is_skipped_by_dlib_and_found_by_centerface():
    det = detect_faces(photo("hard_13_partial.jpg"), detector="dlib")
    assert det.faces == []
    assert [s.reason for s in det.skipped] == [REASON_BORDER]
    assert det.skipped[0].landmarks is not None
    # A partial face is still a face to hide: the union detector returns it.
    det = detect_faces(photo("hard_13_partial.jpg"))
    assert len(det.faces) == 1 and det.faces[0].source == "centerface"
    assert REASON_BORDER in [s.reason for s in det.skipped]


def test_face_selection_and_minimum_size():
    img = photo("multi_06.jpg")
    assert len(detect_faces(img, faces="largest").faces) == 1
    det = detect_faces(img, faces=2)
    assert len(det.faces) == 2
    assert sum(s.reason == REASON_NOT_SELECTED for s in det.skipped) == 4
    tiny = detect_faces(img, min_size=10_000)
    assert tiny.faces == [] and len(tiny.skipped) == 6
    assert all(s.reason == REASON_SMALL for s in tiny.skipped)


def test_rotated_photo_needs_try_rotations_and_maps_landmarks_back():
    img = photo("portrait_01.jpg")
    upright = detect_faces(img).faces[0]
    turned = np.ascontiguousarray(np.rot90(img, 1))  # turned 90 degrees counter-clockwise
    assert detect_faces(turned, detector="dlib", try_rotations=False).faces == []
    det = detect_faces(turned)  # rotations are searched by default
    assert det.rotation in (90, 270) and len(det.faces) == 1
    assert det.faces[0].treatment == "swap"
    # Landmarks are in the turned photo's pixels: the upright ones, turned the same way.
    h, w = img.shape[:2]
    x, y = upright.landmarks[:, 0], upright.landmarks[:, 1]
    expected = np.stack([y, w - 1 - x], axis=1)
    assert np.median(np.linalg.norm(det.faces[0].landmarks - expected, axis=1)) < 4.0


def test_working_resolution_keeps_landmarks_on_the_full_photo():
    img = photo("portrait_09.jpg")  # 1638 x 2048
    small = detect_faces(img, max_side=512).faces[0]
    large = detect_faces(img, max_side=1024).faces[0]
    size = small.size
    assert np.median(np.linalg.norm(small.landmarks - large.landmarks, axis=1)) < 0.03 * size


def test_bad_inputs_are_usage_errors():
    with pytest.raises(UsageError, match="HxWx3 uint8"):
        detect_faces(np.zeros((64, 64), np.uint8))
    with pytest.raises(UsageError, match="HxWx3 uint8"):
        detect_faces(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(UsageError, match="faces must be"):
        detect_faces(np.zeros((64, 64, 3), np.uint8), faces=0)
