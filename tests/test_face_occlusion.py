"""Occluders found on real photos stay in front of the Mask; the face's own eyes do not.

Photos of ../shared/data/faces (skipped when shared/ is absent). The regions below are small
hand-labelled polygons in photo pixels (checked on crops of the photos), not images.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from imnkit.face.detect import detect_faces
from imnkit.face.occlusion import keep_occluders, occluder_mask

from _photos import photo

# hard_05_mask.png: the pink mesh side panel of the medical mask, right of its dotted strip.
PANEL = [(315, 500), (360, 490), (400, 500), (400, 600), (360, 640), (315, 660)]
# hard_05_mask.png: around the iris of the image-right eye (it looks sideways, past its landmarks).
IRIS_BOX = (370, 280, 415, 340)  # y0, x0, y1, x1
# hard_06_occlusion.png: the left bar and the lower rim of the black glasses frame (dark skin).
FRAME_BOXES = ((220, 135, 270, 148), (276, 150, 302, 225))


@functools.lru_cache(maxsize=None)
def _face_and_alpha(name: str):
    img = photo(name)
    face = detect_faces(img).faces[0]
    found = occluder_mask(img, face)
    full = np.zeros(img.shape[:2], np.float32)
    if found is not None:
        alpha, (y0, x0, y1, x1) = found
        full[y0:y1, x0:x1] = alpha
    return img, face, full


def _hull(shape, pts) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    return m > 0


def _luma(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)


def test_medical_mask_side_panel_is_kept():
    img, face, alpha = _face_and_alpha("hard_05_mask.png")
    # The panel's pixels inside the face (where the Mask is painted): near skin in colour, but
    # part of the mask, which covers the mouth.
    on = _hull(img.shape[:2], np.array(PANEL, np.float64)) & _hull(img.shape[:2], face.landmarks)
    assert on.sum() > 1500
    assert (alpha[on] > 0.5).mean() > 0.75
    # The mask's middle stays kept too.
    lm = face.landmarks
    mouth = _hull(img.shape[:2], lm[48:60])
    assert (alpha[mouth] > 0.5).mean() > 0.95


def test_iris_beside_a_mask_is_not_kept():
    img, _, alpha = _face_and_alpha("hard_05_mask.png")
    y0, x0, y1, x1 = IRIS_BOX
    iris = np.zeros(img.shape[:2], bool)
    iris[y0:y1, x0:x1] = True
    iris &= _luma(img) < 70
    assert iris.sum() > 500
    assert (alpha[iris] > 0.5).mean() < 0.05, "the eye is the face's, the Mask's eye goes there"


def test_glasses_frame_on_dark_skin_is_kept_whole():
    img, face, alpha = _face_and_alpha("hard_06_occlusion.png")
    frame = np.zeros(img.shape[:2], bool)
    for y0, x0, y1, x1 in FRAME_BOXES:
        frame[y0:y1, x0:x1] = True
    frame &= _luma(img) < 40  # the frame's black pixels in the labelled boxes (the skin is lighter)
    assert frame.sum() > 400
    assert (alpha[frame] > 0.5).mean() > 0.55
    # Kept in front: a grey Mask image gets the frame's pixels back.
    masked = np.full_like(img, 128)
    region = (0, 0, img.shape[0], img.shape[1])
    out, frac = keep_occluders(img, masked, [face], [region])
    assert frac[0] > 0
    assert (_luma(out)[frame] < 80).mean() > 0.55, "dark again, not the Mask's grey"


def test_eyes_and_lids_of_a_bare_face_are_not_kept():
    img, face, alpha = _face_and_alpha("hard_02_pose_up.jpeg")
    lm = face.landmarks
    size = float(np.hypot(*(lm.max(0) - lm.min(0))) / np.sqrt(2))
    eyes = np.zeros(img.shape[:2], np.uint8)
    for idx in (np.r_[36:42], np.r_[42:48]):
        eyes |= _hull(img.shape[:2], lm[idx]).astype(np.uint8)
    r = int(0.06 * size)
    zone = cv2.dilate(eyes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
    # Eyes, lids and their creases (looking up, the lids are dark lines) get the Mask's.
    assert (alpha[zone] > 0.5).mean() < 0.03


def test_light_on_bare_skin_is_not_kept():
    # portrait_07.png: a child's face lit from the image-left; the nose tip's shine and the lit
    # cheek under the eye are paler than the skin's colour (the old code kept 11 % of the nose and
    # 6 % of the cheeks, which showed as pale patches on the Mask).
    img, face, alpha = _face_and_alpha("portrait_07.png")
    lm = face.landmarks
    nose = _hull(img.shape[:2], lm[27:36])
    cheeks = _hull(img.shape[:2], lm[[1, 2, 3, 31, 39, 40, 41, 36]]) | _hull(img.shape[:2], lm[[15, 14, 13, 35, 42, 47, 46, 45]])
    assert nose.sum() > 5000 and cheeks.sum() > 20000
    assert (alpha[nose] > 0.5).mean() < 0.01
    assert (alpha[cheeks] > 0.5).mean() < 0.02


def test_white_occluder_beside_the_mouth_is_kept():
    # hard_06_occlusion.png: a white shape covers the right half of the face (an eye and a cheek,
    # not the mouth). Bright like light on skin, but with no skin hue: it stays in front.
    img, face, alpha = _face_and_alpha("hard_06_occlusion.png")
    white = _hull(img.shape[:2], face.landmarks) & (_luma(img) > 240)
    assert white.sum() > 5000
    assert (alpha[white] > 0.5).mean() > 0.9
