"""The Mask's open mouth shows no pixel of the protected mouth (teeth identify people), issue 26 item 10."""

from __future__ import annotations

import functools
import logging

import cv2
import numpy as np
import pytest

from imnkit.errors import UsageError
from imnkit.face.detect import detect_faces, fit_landmarks, predictor_box
from imnkit.face.mouth import MouthColours, interior
from imnkit.face.mouth_match import mouth_correlation, mouth_patch
from imnkit.face.swap import SwapParams, swap_faces
from imnkit.stage import StageContext, get_stage, run_stage

from _photos import photo as _photo

#: a broad smile showing the upper teeth
OWNER = "portrait_01.jpg"
#: a baby's open mouth (tongue, dark throat), and other people's open mouths for the control
OPEN = "portrait_06.png"
OTHERS = ("portrait_01.jpg", "portrait_02.png", "portrait_03.png", "portrait_10.png")


@functools.lru_cache(maxsize=None)
def _face(name: str):
    return detect_faces(_photo(name)).faces[0]


def _inner_mouth(shape, lm: np.ndarray) -> np.ndarray:
    """The inner-lip polygon less a pixel at its edge (the lips around it give the Mask its lip colour)."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(lm[60:68]).astype(np.int32)], 1)
    return cv2.erode(m, np.ones((3, 3), np.uint8)) > 0


def test_the_mask_is_the_same_whatever_is_inside_the_protected_mouth():
    # The protected mouth's inside (its teeth) replaced by noise: by default the Mask is the same bit
    # for bit (nothing of it is read); with mouth="original" it shows the noise.
    img, face = _photo(OWNER), _face(OWNER)
    inside = _inner_mouth(img.shape[:2], face.landmarks)
    assert inside.sum() > 1000  # an open smile
    other = img.copy()
    other[inside] = np.random.default_rng(0).integers(0, 256, (int(inside.sum()), 3), dtype=np.uint8)
    run = lambda im, **kw: swap_faces(im, [face], replace="man_adult_1", min_distance=None,  # noqa: E731
                                      params=SwapParams(**kw)).image
    np.testing.assert_array_equal(run(img), run(other))
    a, b = run(img, mouth="original"), run(other, mouth="original")
    assert np.any(a != b)


def test_the_masks_mouth_is_no_closer_to_its_owner_than_to_other_people(caplog):
    # The measure of benchmarks/mouth_leak.py on one face: the Mask's mouth inside (where dlib reads
    # it on the Mask), warped onto a canonical mouth, correlated with the owner's and with others'.
    img, face = _photo(OPEN), _face(OPEN)
    own = mouth_patch(img, face.landmarks)
    others = [mouth_patch(_photo(n), _face(n).landmarks) for n in OTHERS]

    def read(mode: str) -> tuple[float, float]:
        res = swap_faces(img, [face], seed=0, params=SwapParams(mouth=mode))
        mask = mouth_patch(res.image, fit_landmarks(res.image, predictor_box(face)))
        return mouth_correlation(mask, own), max(mouth_correlation(mask, o) for o in others)

    with caplog.at_level(logging.WARNING, logger="imnkit"):
        to_own, to_others = read("synthetic")
    assert not [r for r in caplog.records if "mouth" in r.getMessage()]
    assert to_own <= to_others, (to_own, to_others)
    # The opt-in old behaviour copies the teeth: the measure sees them, and a warning says so.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imnkit"):
        to_own, to_others = read("original")
    assert to_own > 0.6 and to_own > to_others + 0.3, (to_own, to_others)
    assert any("mouth='original'" in r.getMessage() and "teeth" in r.getMessage() for r in caplog.records)


def _colours(**kw) -> MouthColours:
    base = dict(skin_l=170.0, lips=(120.0, 150.0, 140.0), skin_ab=(140.0, 145.0))
    return MouthColours(**{**base, **kw})


def _lips(gap: float) -> np.ndarray:
    """Inner-lip landmarks (iBUG 60-67) of a mouth 100 px wide whose lips part by ``gap`` px."""
    up = np.array([[100, 100], [125, 100 - gap / 2], [150, 100 - gap / 2], [175, 100 - gap / 2], [200, 100]])
    lo = np.array([[175, 100 + gap / 2], [150, 100 + gap / 2], [125, 100 + gap / 2]])
    return np.vstack([up, lo]).astype(np.float64)


def test_an_open_mouth_gets_teeth_and_a_closed_one_a_dark_line():
    box = (60, 90, 140, 210)
    rgb, alpha = interior(_lips(40.0), box, size=250.0, colours=_colours())
    grey = rgb.mean(axis=2)
    inside = alpha > 0.99
    assert inside.sum() > 2000 and not alpha[:5].any()  # nothing drawn far from the lips
    assert grey[inside].max() > 200 and grey[inside].min() < 60  # bright teeth and a dark cavity
    rgb, alpha = interior(_lips(0.0), box, size=250.0, colours=_colours())
    drawn = alpha > 0.5
    assert 0 < drawn.sum() < 100 * 5  # a line a few pixels thick
    assert rgb.mean(axis=2)[drawn].max() < 120  # no sliver of teeth: darker than the lips


def test_the_drawn_mouth_follows_the_photos_light_and_stays_grey_in_a_grey_photo():
    box = (60, 90, 140, 210)
    bright, alpha = interior(_lips(40.0), box, 250.0, _colours(skin_l=200.0))
    dark, _ = interior(_lips(40.0), box, 250.0, _colours(skin_l=60.0, lips=(40.0, 150.0, 140.0)))
    sel = alpha > 0.99
    assert dark[sel].mean() < 0.6 * bright[sel].mean()
    grey, _ = interior(_lips(40.0), box, 250.0, _colours(grey=True, grain=2.0))
    assert np.all(grey[..., 0] == grey[..., 1]) and np.all(grey[..., 1] == grey[..., 2])


def test_the_mouth_mode_is_a_stage_parameter_and_checked():
    assert get_stage("swap").resolve_params({})["mouth"] == "synthetic"
    with pytest.raises(UsageError):
        get_stage("swap").resolve_params({"mouth": "teeth"})
    img, face = _photo(OWNER), _face(OWNER)
    with pytest.raises(UsageError, match="mouth"):
        swap_faces(img, [face], params=SwapParams(mouth="teeth"))  # type: ignore[arg-type]


def test_the_swap_stage_passes_the_mouth_mode_and_notes_the_opt_in(caplog):
    import torch

    from imnkit.bundle import Bundle

    bundle = Bundle(tensors={"image.protected": torch.from_numpy(_photo("portrait_02.png").copy())})
    align = get_stage("align")
    run_stage(align, bundle, align.resolve_params({}), StageContext(device=torch.device("cpu")))
    swap = get_stage("swap")
    masks = {}
    for mode in ("synthetic", "original"):
        b = Bundle(tensors=dict(bundle.tensors), meta=dict(bundle.meta))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="imnkit"):
            run_stage(swap, b, swap.resolve_params({"mouth": mode, "occlusion": False}),
                      StageContext(device=torch.device("cpu")))
        warned = any("mouth='original'" in r.getMessage() for r in caplog.records)
        noted = any("mouth=original" in n for n in b.meta.get("notes", []))
        assert warned == noted == (mode == "original"), (mode, warned, noted)
        masks[mode] = np.asarray(b.tensors["mask.image"])
    lm = _face("portrait_02.png").landmarks
    inside = _inner_mouth(masks["original"].shape[:2], lm)
    assert np.abs(masks["original"][inside].astype(int) - masks["synthetic"][inside].astype(int)).mean() > 10


@pytest.mark.parametrize("name", ["portrait_01.jpg", "portrait_03.png", "portrait_10.png"])
def test_the_occluder_search_puts_no_tooth_back(name):
    # Occluders found in front of a face are put back over the Mask (the original's pixels); white
    # teeth are not skin-coloured, but an open smile is not taken for an occluder.
    from imnkit.face.occlusion import occluder_mask

    img, face = _photo(name), _face(name)
    inside = _inner_mouth(img.shape[:2], face.landmarks)
    kept = np.zeros(img.shape[:2], np.float32)
    found = occluder_mask(img, face)
    if found is not None:
        alpha, (y0, x0, y1, x1) = found
        kept[y0:y1, x0:x1] = alpha
    assert inside.sum() > 500 and not (kept[inside] > 0.0).any()
