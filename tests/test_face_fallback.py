"""Every face found is masked: CenterFace, the union detector, fallback Masks and occluders.

Real photos of ../shared/data/faces (skipped when shared/ is absent); the reference boxes are
benchmarks/data/face_boxes.json (checked by eye, see benchmarks/face_recall.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imnkit.face.align import ARCFACE_TEMPLATE, apply_affine, five_points
from imnkit.face.centerface import WEIGHTS_NAME, detect_centerface, detect_centerface_multiscale
from imnkit.face.detect import (
    TREATMENT_FALLBACK,
    detect_faces,
    landmarks_from_points5,
    make_face,
)
from imnkit.face.fallback import (
    TREATMENT_OBFUSCATE,
    TREATMENT_WARP5,
    coverage,
    core_box,
    mask_fallback_face,
    obfuscate_face,
)
from imnkit.face.identities import get_identity, identity_names
from imnkit.face.occlusion import keep_occluders, occluder_mask

from _photos import photo

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "face_boxes.json"


def _overlap(a, b) -> float:
    iy = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ix = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def test_centerface_model_is_shipped_and_pinned():
    from imnkit.weights import get_spec, verify

    spec = get_spec(WEIGHTS_NAME)
    assert spec.source == "package" and spec.sha256 and "MIT" in spec.license
    result = verify(WEIGHTS_NAME)
    assert result["ok"] and result["sha256"] == spec.sha256


def test_centerface_points_follow_the_template_order():
    hits = detect_centerface(photo("portrait_01.jpg"), max_side=640)
    assert len(hits) == 1
    p = hits[0].points5
    assert p[0, 0] < p[2, 0] < p[1, 0], "image-left eye, nose, image-right eye"
    assert max(p[0, 1], p[1, 1]) < p[2, 1] < min(p[3, 1], p[4, 1]), "eyes above nose above mouth"
    x0, y0, x1, y1 = hits[0].box
    assert ((p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)).all()


def test_centerface_gives_the_same_answer_whatever_came_before():
    # OpenCV's importer fixes shapes at the first forward: each input shape needs its own net.
    small, large = photo("hard_09_glasses.png"), photo("hard_05_mask.png")
    first = [h.box.tolist() for h in detect_centerface(large, max_side=320)]
    detect_centerface(small, max_side=320)
    again = [h.box.tolist() for h in detect_centerface(large, max_side=320)]
    assert first == again and len(first) == 1


def test_centerface_on_several_threads_at_once_answers_as_on_one():
    # An OpenCV net is not safe to share between threads: each thread has its own.
    from concurrent.futures import ThreadPoolExecutor

    img = photo("multi_03.jpg")
    alone = [(h.box.tolist(), h.score) for h in detect_centerface(img, max_side=640)]
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: [(h.box.tolist(), h.score) for h in detect_centerface(img, max_side=640)],
                             range(9)))
    assert alone and all(r == alone for r in runs)


def test_landmarks_from_points5_fit_the_points():
    m = np.array([[1.7, -0.3, 40.0], [0.3, 1.7, 25.0]])  # a turned, scaled, moved face
    p5 = apply_affine(m, ARCFACE_TEMPLATE).astype(np.float32)
    lm = landmarks_from_points5(p5)
    assert lm.shape == (68, 2)
    # The mean face's own 5 points land near the given ones (within 5 % of the face's size:
    # the pool's faces differ from the ArcFace template by a few template pixels).
    assert np.abs(five_points(lm) - p5).max() < 0.05 * 1.7 * 112
    assert np.abs(five_points(lm) - p5).max() > 0, "the mean face, not the template points"


def test_profile_masked_and_upside_down_photos_are_found():
    ref = json.loads(REFERENCE.read_text())["photos"]
    for name in ("hard_01_profile.jpeg", "hard_04_rot90.jpg", "hard_05_mask.png"):
        faces = detect_faces(photo(name)).faces
        for box in ref[name]:
            assert any(_overlap(box, f.box) > 0.3 for f in faces), name
    upside_down = np.ascontiguousarray(np.rot90(photo("portrait_08.jpg"), 2))
    det = detect_faces(upside_down)
    assert det.rotation == 180 and len(det.faces) == 1 and det.faces[0].treatment == "swap"


def test_no_false_positive_with_the_union_detector():
    for name in ("noface_01.png", "noface_03.png", "noface_06.jpg"):
        assert detect_centerface_multiscale(photo(name)) == [], name


def _fallback_face(img: np.ndarray):
    hit = detect_centerface(img, max_side=640)[0]
    x0, y0, x1, y1 = (int(v) for v in hit.box)
    return make_face(landmarks_from_points5(hit.points5), (y0, x0, y1, x1), hit.score,
                     treatment=TREATMENT_FALLBACK, source="centerface")


def test_fallback_face_gets_a_warp_from_its_five_points():
    img = np.array(photo("portrait_01.jpg"))
    face = _fallback_face(img)
    out, box, how = mask_fallback_face(img, face, get_identity(identity_names()[0]))
    assert how == TREATMENT_WARP5
    assert coverage(img, out, core_box(face, img.shape[:2])) >= 0.6
    y0, x0, y1, x1 = box
    outside = np.ones(img.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (out[outside] == img[outside]).all(), "nothing changes outside the returned box"


def test_obfuscation_hides_the_face_and_stays_in_its_box():
    img = np.array(photo("portrait_01.jpg"))
    face = _fallback_face(img)
    out, box = obfuscate_face(img, face)
    y0, x0, y1, x1 = box
    outside = np.ones(img.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (out[outside] == img[outside]).all()
    cy0, cx0, cy1, cx1 = core_box(face, img.shape[:2])
    core_in, core_out = img[cy0:cy1, cx0:cx1].astype(float), out[cy0:cy1, cx0:cx1].astype(float)
    # The detail is gone: the gradient energy of the core drops by far.
    grad = lambda a: np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert grad(core_out) < 0.25 * grad(core_in)


def test_unmaskable_face_falls_back_to_obfuscation():
    img = np.array(photo("portrait_01.jpg"))
    face = _fallback_face(img)
    # min_cover above 1 can never be met by the warp: obfuscation must follow.
    out, box, how = mask_fallback_face(img, face, get_identity(identity_names()[0]), min_cover=1.01)
    assert how == TREATMENT_OBFUSCATE and box is not None and (out != img).any()


def test_painted_occluder_is_found_and_kept_in_front():
    img = np.array(photo("portrait_03.png"))
    face = detect_faces(img).faces[0]
    lm = face.landmarks
    # A blue patch from mid-nose to the chin (a medical mask's place), on a copy of the photo.
    x0, x1 = int(lm[4, 0]), int(lm[12, 0])
    y0, y1 = int(lm[29, 1]), int(lm[8, 1]) - 10
    occluded = img.copy()
    occluded[y0:y1, x0:x1] = (40, 80, 200)
    alpha, (by0, bx0, by1, bx1) = occluder_mask(occluded, face)
    full = np.zeros(img.shape[:2], np.float32)
    full[by0:by1, bx0:bx1] = alpha
    # Where the patch covers the face (inside its landmarks' hull), it is an occluder.
    import cv2

    hull = np.zeros(img.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(lm).astype(np.int32)), 1)
    on_face = np.zeros(img.shape[:2], bool)
    on_face[y0 + 3:y1 - 3, x0 + 3:x1 - 3] = True
    on_face &= hull.astype(bool)
    assert on_face.sum() > 1000
    assert (full[on_face] > 0.5).mean() > 0.9, "the patch is an occluder"
    eye_y = int(lm[36:48, 1].mean())
    cheek = full[eye_y + 15:int(lm[29, 1]) - 5, int(lm[1, 0]) + 20:int(lm[31, 0]) - 10]
    assert cheek.size > 500
    assert (cheek > 0.5).mean() < 0.1, "bare cheek skin is not"
    # Kept in front: the Mask image gets the patch back, and nothing outside the region changes.
    masked = np.full_like(occluded, 128)
    region = (by0, bx0, by1, bx1)
    out, frac = keep_occluders(occluded, masked, [face], [region])
    assert frac[0] > 0
    assert np.abs(out[y0 + 5:y1 - 5, x0 + 5:x1 - 5].astype(int) - (40, 80, 200)).mean() < 3
    outside = np.ones(img.shape[:2], bool)
    outside[by0:by1, bx0:bx1] = False
    assert (out[outside] == 128).all()


def test_plain_face_has_few_occluders():
    img = photo("portrait_05.png")
    face = detect_faces(img).faces[0]
    found = occluder_mask(img, face)
    if found is not None:
        alpha, _ = found
        lm = face.landmarks
        # Inside the inner face (eyes to mouth) almost nothing is called an occluder.
        y0, y1 = found[1][0], found[1][2]
        x0 = found[1][1]
        inner = alpha[int(lm[19, 1]) - y0:int(lm[57, 1]) - y0, int(lm[36, 0]) - x0:int(lm[45, 0]) - x0]
        assert (inner > 0.5).mean() < 0.05


@pytest.mark.slow
def test_swap_stage_masks_every_face_and_reports_treatments():
    from imnkit.recipe import Runner, load_recipe

    recipe = load_recipe(str(Path(__file__).resolve().parents[1] / "recipes" / "mask.toml"))
    recipe.steps[:] = [s for s in recipe.steps if s.stage.name in ("align", "swap")]
    from _photos import faces_dir

    bundle = Runner(recipe).process(faces_dir() / "multi_10.jpg")
    treatments = bundle.meta["swap.treatments"]
    boxes = bundle.require("faces.boxes").tolist()
    regions = bundle.require("swap.regions").tolist()
    assert len(treatments) == len(boxes) == 7
    assert set(treatments) <= {"swap", "warp5", "obfuscate"} and "warp5" in treatments
    # Every face's pixels changed are inside a region the embed stage hides.
    for b in boxes:
        assert any(_overlap(b, r) > 0.5 for r in regions)
    assert any(n.startswith("faces: ") for n in bundle.meta.get("notes", []))
    assert len(bundle.meta["swap.occluded"]) == 7
