"""Pure geometry of imnkit.face: Umeyama, 5 points, affine convention, rotation mapping, warping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imnkit.errors import UsageError
from imnkit.face.align import (
    ARCFACE_TEMPLATE,
    alignment_error,
    apply_affine,
    arcface_template,
    five_points,
    invert_affine,
    template_affine,
    umeyama,
)
from imnkit.face.detect import _rotate_back
from imnkit.face.warp import delaunay, piecewise_affine


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.c_[r, [tx, ty]]


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, size=(30, 2))
    m = _similarity(23.0, 0.37, 11.0, -40.0)
    est = umeyama(src, apply_affine(m, src))
    np.testing.assert_allclose(est, m, atol=1e-9)


def test_umeyama_never_reflects():
    src = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 3]], dtype=np.float64)
    mirrored = src * [-1, 1]
    est = umeyama(src, mirrored)
    assert np.linalg.det(est[:, :2]) > 0


def test_umeyama_rejects_bad_shapes():
    with pytest.raises(UsageError, match="umeyama"):
        umeyama(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(UsageError, match="same place"):
        umeyama(np.ones((5, 2)), np.zeros((5, 2)))


def test_five_points_follow_the_template_order():
    lm = np.zeros((68, 2), np.float32)
    lm[36:42] = [30, 50]  # image-left eye
    lm[42:48] = [70, 50]  # image-right eye
    lm[30] = [50, 70]  # nose tip
    lm[48] = [35, 90]
    lm[54] = [65, 90]
    np.testing.assert_allclose(five_points(lm), [[30, 50], [70, 50], [50, 70], [35, 90], [65, 90]])
    with pytest.raises(UsageError, match=r"\(68, 2\)"):
        five_points(np.zeros((5, 2)))


def test_template_affine_maps_photo_pixels_to_template_pixels():
    # A face that is the template turned, scaled up and moved: the affine must undo exactly that.
    photo_pts = apply_affine(_similarity(-31.0, 3.2, 300.0, 150.0), ARCFACE_TEMPLATE)
    aff = template_affine(photo_pts)
    assert aff.shape == (2, 3) and aff.dtype == np.float32
    np.testing.assert_allclose(apply_affine(aff, photo_pts), ARCFACE_TEMPLATE, atol=1e-3)
    assert alignment_error(photo_pts, aff) < 1e-3
    # Convention check: cv2.warpAffine with the same matrix puts a marked photo pixel where
    # apply_affine says it goes.
    img = np.zeros((800, 800, 3), np.uint8)
    x, y = np.round(photo_pts[2]).astype(int)
    cv2.circle(img, (int(x), int(y)), 6, (255, 255, 255), -1)
    crop = cv2.warpAffine(img, aff, (112, 112)).astype(np.float64)[..., 0]
    ys, xs = np.mgrid[0:112, 0:112]
    cu, cv = (crop * xs).sum() / crop.sum(), (crop * ys).sum() / crop.sum()
    u, v = apply_affine(aff, [[x, y]])[0]
    assert abs(cu - u) < 0.5 and abs(cv - v) < 0.5


def test_arcface_template_scales():
    np.testing.assert_allclose(arcface_template(224), ARCFACE_TEMPLATE * 2)
    with pytest.raises(UsageError):
        arcface_template(0)


def test_invert_affine_round_trips():
    m = _similarity(12.0, 1.7, 3.0, 4.0)
    pts = np.array([[1.0, 2.0], [300.0, -7.0]])
    np.testing.assert_allclose(apply_affine(invert_affine(m), apply_affine(m, pts)), pts, atol=1e-9)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotate_back_matches_numpy_rot90(k):
    h, w = 37, 53
    img = np.zeros((h, w), np.uint8)
    pts = np.array([[3, 5], [50, 30], [20, 36]], dtype=np.float32)
    for i, (x, y) in enumerate(pts.astype(int)):
        img[y, x] = i + 1
    rot = np.rot90(img, k)
    found = np.array([np.argwhere(rot == i + 1)[0][::-1] for i in range(len(pts))], np.float32)
    np.testing.assert_allclose(_rotate_back(found, k, (h, w)), pts)


def test_delaunay_is_deterministic_and_covers_the_hull():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 100, size=(40, 2))
    t1, t2 = delaunay(pts), delaunay(pts.copy())
    np.testing.assert_array_equal(t1, t2)
    def tri_area(a: int, b: int, c: int) -> float:
        (x1, y1), (x2, y2) = pts[b] - pts[a], pts[c] - pts[a]
        return abs(x1 * y2 - x2 * y1) / 2

    area = sum(tri_area(a, b, c) for a, b, c in t1)
    hull_area = cv2.contourArea(cv2.convexHull(pts.astype(np.float32)))
    assert area == pytest.approx(hull_area, rel=1e-3)


def test_piecewise_affine_equals_a_global_affine_when_all_triangles_agree():
    rng = np.random.default_rng(2)
    src = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    src = cv2.GaussianBlur(src, (0, 0), 2)
    m = _similarity(8.0, 1.3, 10.0, 5.0)
    src_pts = np.array([[20, 20], [140, 20], [140, 100], [20, 100], [80, 60], [50, 40]], float)
    dst_pts = apply_affine(m, src_pts)
    warped, covered = piecewise_affine(src, src_pts, dst_pts, delaunay(src_pts), (0, 0, 200, 250))
    ref = cv2.warpAffine(src, m.astype(np.float32), (250, 200), flags=cv2.INTER_LINEAR)
    inner = cv2.erode(covered.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.sum() > 5000
    diff = np.abs(warped.astype(int) - ref.astype(int))[inner]
    assert diff.max() <= 1
