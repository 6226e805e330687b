"""The classical swap, the built-in identity pool and the dlib identity distance."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import astuple

import numpy as np
import pytest

from imnkit.errors import UsageError, WeightsError
from imnkit.face.detect import detect_faces, fit_landmarks, make_face
from imnkit.face.expression import measure
from imnkit.face.identities import (
    AGES,
    LOOKS,
    MANIFEST,
    assign_identities,
    default_dir,
    get_identity,
    identity_names,
    load_pool,
)
from imnkit.face import swap as swap_module
from imnkit.face.descriptors import (
    SAME_PERSON_THRESHOLD,
    descriptor_distance,
    face_descriptor,
    identity_distance,
    pool_face_descriptor,
)
from imnkit.face.swap import NEAR_IDENTITY_MARGIN, PUSH_GEOMETRY, SwapParams, swap_faces


from _photos import photo as _photo


@functools.lru_cache(maxsize=None)
def _faces(name: str):
    return detect_faces(_photo(name)).faces


def _mask_distance(img, mask, face) -> float:
    """Independent re-measurement: landmarks re-fitted on the Mask image in the face's box."""
    again = make_face(fit_landmarks(mask, face.box), face.box)
    return descriptor_distance(face_descriptor(img, face), face_descriptor(mask, again))


def _assert_only_region_changed(img, res):
    assert res.image.shape == img.shape and res.image.dtype == np.uint8
    assert res.region is not None
    y0, x0, y1, x1 = res.region
    assert 0 <= y0 < y1 <= img.shape[0] and 0 <= x0 < x1 <= img.shape[1]
    outside = np.ones(img.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(res.image[outside], img[outside])
    changed = np.any(res.image != img, axis=2)
    ys, xs = np.nonzero(changed)
    # The box is tight: changed pixels touch all four sides.
    assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == res.region


# ---------------------------------------------------------------- the identity pool


PERMISSIVE = ("MIT", "Apache", "BSD", "Boost", "CC0")


def _names(gender: str, age: str) -> list[str]:
    return [i.name for i in load_pool() if (i.gender, i.age) == (gender, age)]


def test_pool_is_large_varied_distinct_and_documented():
    pool = load_pool()
    assert len(pool) >= 40
    root = default_dir()
    total = sum(p.stat().st_size for p in root.iterdir())
    assert total < 9_000_000, "the shipped pool must stay a few MB"  # 41 identities: 8.23 MB
    # Every look (girl, boy, f/m x young, adult, senior) has >= 3 identities and a darker-skinned
    # one (ITA < 28; f/adult's since scripts/dark_adult_woman.py, docs/identities.md).
    for look in LOOKS:
        mine = [i for i in pool if (i.gender, i.age) == look]
        assert len(mine) >= 3, look
        assert any(i.tone < 28 for i in mine), look
    meta = json.loads((root / MANIFEST).read_text())
    sources = (root / "SOURCES.md").read_text()
    looks = set()
    for ident, entry in zip(pool, meta["identities"]):
        assert ident.image.dtype == np.uint8 and ident.image.ndim == 3 and ident.image.shape[2] == 3
        h, w = ident.image.shape[:2]
        assert ident.landmarks.shape == (68, 2)
        assert (ident.landmarks >= 0).all() and (ident.landmarks < [w, h]).all()
        assert hashlib.sha256((root / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        assert ident.licence and ident.origin
        assert ident.name in sources
        assert ident.gender in ("f", "m") and ident.age in AGES and np.isfinite(ident.tone)
        # The stored descriptor is the one the shipped pixels give (a pool rebuilt without
        # refreshing it would choose identities by stale numbers).
        np.testing.assert_allclose(ident.descriptor, pool_face_descriptor(ident.image, ident.landmarks), atol=1e-4)
        looks.add((ident.gender, ident.age))
        # A composite of >= 3 people, each listed with a permissive repository licence; or a
        # public-domain portrait.
        if not entry["contributors"]:
            assert ident.licence == "public domain"
        else:
            assert len(entry["contributors"]) >= 3
        for c in entry["contributors"]:
            line = next(ln for ln in sources.splitlines() if ln.startswith(f"| {c} |"))
            assert line.split(" | ")[4].startswith(PERMISSIVE), line
    assert {a for _, a in looks} == set(AGES), "every age band is covered"
    assert {g for g, _ in looks} == {"f", "m"}
    descs = {}
    for ident in pool:
        found = detect_faces(np.ascontiguousarray(ident.image), faces="largest").faces
        assert len(found) == 1, f"{ident.name} is not detected as a face"
        descs[ident.name] = face_descriptor(ident.image, found[0])
    names = list(descs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert descriptor_distance(descs[a], descs[b]) >= SAME_PERSON_THRESHOLD, (a, b)


def test_assignment_is_seeded_and_spreads_over_the_pool():
    names = identity_names()
    a = assign_identities(len(names), seed=7)
    assert a == assign_identities(len(names), seed=7)
    assert sorted(a) == sorted(names), "one face per identity until the pool is used up"
    assert len({tuple(assign_identities(len(names), seed=s)) for s in range(10)}) > 1
    long = assign_identities(2 * len(names) + 1, seed=3)
    assert long[: len(names)] == long[len(names) : 2 * len(names)]


def test_unknown_identity_names_the_valid_ones():
    with pytest.raises(UsageError) as err:
        get_identity("nobody")
    assert all(n in err.value.hint for n in identity_names())


# ---------------------------------------------------------------- identity distance


def test_identity_distance_tells_people_apart():
    obama, group = _photo("portrait_01.jpg"), _photo("multi_01.jpg")  # Obama; Obama and Biden
    f0 = _faces("portrait_01.jpg")[0]
    left, right = sorted(_faces("multi_01.jpg"), key=lambda f: f.box[1])
    assert identity_distance(obama, f0, obama, f0) == pytest.approx(0.0, abs=1e-6)
    assert identity_distance(obama, f0, group, left) < SAME_PERSON_THRESHOLD
    assert identity_distance(obama, f0, group, right) >= SAME_PERSON_THRESHOLD
    d = face_descriptor(obama, f0)
    assert d.shape == (128,) and d.dtype == np.float32


# ---------------------------------------------------------------- swap


@pytest.mark.parametrize("name", ["portrait_01.jpg", "portrait_03.png", "portrait_05.png"])
@pytest.mark.parametrize("look", [("f", "young"), ("m", "adult")])
def test_swap_alone_changes_identity(name, look):
    # The swap itself (no retry with other identities) moves the face past dlib's threshold.
    who = _names(*look)[0]
    img = _photo(name)
    face = _faces(name)[0]
    res = swap_faces(img, [face], replace=who, min_distance=None)
    assert res.identities == [who] and res.distances == [None]
    _assert_only_region_changed(img, res)
    assert _mask_distance(img, res.image, face) >= SAME_PERSON_THRESHOLD


def test_swap_is_deterministic_and_leaves_the_input_alone():
    img = _photo("portrait_08.jpg")
    before = img.copy()
    a = swap_faces(img, _faces("portrait_08.jpg"), seed=5)
    b = swap_faces(img, _faces("portrait_08.jpg"), seed=5)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.region == b.region and a.identities == b.identities
    np.testing.assert_array_equal(img, before)
    _assert_only_region_changed(img, a)
    # The default checks identity: the reported distance is far, and so is a re-measurement.
    assert a.distances[0] >= SAME_PERSON_THRESHOLD
    assert _mask_distance(img, a.image, _faces("portrait_08.jpg")[0]) >= SAME_PERSON_THRESHOLD


def test_identities_that_all_read_too_close_still_give_a_full_size_mask():
    # min_distance 2.0: every large-face draft reads too close and is passed over before its
    # full-size rendering; the closest-to-hidden one is then rendered at full size, and the
    # distance reported is that full-size Mask's (not the draft's).
    img = _photo("portrait_03.png")
    face = _faces("portrait_03.png")[0]
    res = swap_faces(img, [face], min_distance=2.0)
    _assert_only_region_changed(img, res)
    assert res.identities[0] in identity_names()
    again = make_face(fit_landmarks(res.image, face.box), face.box)
    assert res.distances[0] == pytest.approx(
        descriptor_distance(face_descriptor(img, face), face_descriptor(res.image, again)), abs=1e-6)
    # ... and it is a real Mask: as far as the default's.
    assert res.distances[0] >= SAME_PERSON_THRESHOLD


def test_group_photo_faces_get_different_identities():
    img = _photo("multi_06.jpg")
    faces = _faces("multi_06.jpg")
    assert len(faces) == 6
    res = swap_faces(img, faces, seed=0)
    _assert_only_region_changed(img, res)
    assert len(set(res.identities)) == 6, "faces of one photo get different identities"
    assert len(res.face_regions) == 6 and all(r is not None for r in res.face_regions)
    for face, dist in zip(faces, res.distances):
        assert dist >= SAME_PERSON_THRESHOLD
        # Each face's changes stay near that face.
        fy0, fx0, fy1, fx1 = face.box
        s = face.size
        ry0, rx0, ry1, rx1 = res.face_regions[faces.index(face)]
        assert ry0 >= fy0 - s and rx0 >= fx0 - s and ry1 <= fy1 + s and rx1 <= fx1 + s


def test_replace_picks_one_identity_for_all_faces():
    img = _photo("multi_03.jpg")
    faces = _faces("multi_03.jpg")
    who = _names("m", "senior")[0]
    res = swap_faces(img, faces, replace=who, min_distance=None)
    assert res.identities == [who] * len(faces)
    with pytest.raises(UsageError, match="lists 1 identities"):
        swap_faces(img, faces, replace=[who])


def test_grey_photo_stays_grey_and_no_faces_changes_nothing():
    img = _photo("portrait_12_gray.png")
    assert (img[..., 0] == img[..., 1]).all()
    res = swap_faces(img, _faces("portrait_12_gray.png"), seed=1)
    assert (res.image[..., 0] == res.image[..., 1]).all() and (res.image[..., 1] == res.image[..., 2]).all()
    _assert_only_region_changed(img, res)
    none = swap_faces(img, [])
    assert none.region is None and none.identities == []
    np.testing.assert_array_equal(none.image, img)


def test_poisson_blend_also_keeps_the_outside_exact():
    img = _photo("portrait_01.jpg")
    res = swap_faces(img, _faces("portrait_01.jpg"), params=SwapParams(blend="poisson"), min_distance=None)
    _assert_only_region_changed(img, res)


def test_similar_assignment_keeps_faces_apart_and_far_from_themselves():
    img = _photo("multi_03.jpg")
    faces = _faces("multi_03.jpg")
    res = swap_faces(img, faces, assign="similar")
    assert len(set(res.identities)) == len(faces)
    assert all(d >= SAME_PERSON_THRESHOLD for d in res.distances)
    _assert_only_region_changed(img, res)
    with pytest.raises(UsageError, match="assign"):
        swap_faces(img, faces, assign="random")


# ---------------------------------------------------------------- expression and look


def test_expression_measures_follow_the_landmarks():
    lm = np.asarray(_faces("portrait_03.png")[0].landmarks, dtype=np.float64)
    e = measure(lm)
    assert 0.2 < e.mouth_open < 0.4 and 0.7 < e.smile_width < 1.0  # a broad open smile
    closed = lm.copy()
    closed[[61, 62, 63]] = closed[[67, 66, 65]]
    assert measure(closed).mouth_open == pytest.approx(0.0, abs=1e-9)
    assert astuple(measure(lm * 3.0 + 7.0)) == pytest.approx(astuple(e))  # ratios: no size or position
    with pytest.raises(UsageError):
        measure(lm[:5])


@pytest.mark.parametrize("name", ["portrait_03.png", "portrait_10.png", "portrait_08.jpg"])
def test_mask_keeps_the_expression(name):
    # Broad open smiles and a closed-mouth smile: the Mask, re-landmarked by dlib, keeps mouth
    # opening, mouth width and eye opening (the default swap, identity and expression checked).
    img, face = _photo(name), _faces(name)[0]
    res = swap_faces(img, [face], seed=0)
    want, got = measure(face.landmarks), measure(fit_landmarks(res.image, face.box))
    assert abs(want.mouth_open - got.mouth_open) < 0.05
    assert abs(want.smile_width - got.smile_width) < 0.04
    # 0.06: a real eye's crisp lids read a squint (portrait_10, 0.148) a little more open, 0.054
    # with man_adult_2; over the 18 portraits the eye error fell (0.014 -> 0.010, naturalness.py).
    assert abs(want.eye_open - got.eye_open) < 0.06
    assert res.distances[0] >= SAME_PERSON_THRESHOLD
    # Without the correction passes the same identity keeps the expression less well.
    plain = swap_faces(img, [face], replace=res.identities[0], min_distance=None,
                       params=SwapParams(expression_passes=0))
    got0 = measure(fit_landmarks(plain.image, face.box))
    err = lambda g: abs(want.mouth_open - g.mouth_open) + abs(want.smile_width - g.smile_width) + abs(want.eye_open - g.eye_open)
    assert err(got) <= err(got0) + 1e-9


def test_a_girl_whose_look_matches_read_just_too_close_still_gets_a_girl():
    # portrait_07.png: both girls' identities, rendered as drawn, read 0.58-0.59 from her (the
    # same person by dlib's rule); one is kept with its layout pushed away from hers, where
    # before a young woman's identity was taken.
    img = _photo("portrait_07.png")
    face = _faces("portrait_07.png")[0]
    res = swap_faces(img, [face], seed=0)
    ident = get_identity(res.identities[0])
    assert (ident.gender, ident.age) == ("f", "child"), ident.name
    assert res.distances[0] >= SAME_PERSON_THRESHOLD
    assert _mask_distance(img, res.image, face) >= SAME_PERSON_THRESHOLD


def _pool_copy(tmp_path, edit):
    """A copy of the shipped pool whose manifest entries went through ``edit``."""
    import shutil

    dst = tmp_path / "pool"
    shutil.copytree(default_dir(), dst, ignore=shutil.ignore_patterns("__pycache__"))
    meta = json.loads((dst / MANIFEST).read_text())
    for entry in meta["identities"]:
        edit(entry)
    (dst / MANIFEST).write_text(json.dumps(meta))
    return str(dst)


def _drafts(monkeypatch, img, face, pool=None):
    """swap_faces' result for ``face`` and the (identity, layout push) of each draft it made."""
    drafts, draft = [], swap_module._draft
    monkeypatch.setattr(swap_module, "_draft",
                        lambda im, f, ident, p: drafts.append((ident.name, p.geometry)) or draft(im, f, ident, p))
    res = swap_faces(img, [face], seed=0, pool=pool)
    monkeypatch.undo()
    assert res.distances[0] >= SAME_PERSON_THRESHOLD
    return res, drafts


def _near(img, face):
    prot = face_descriptor(img, face)
    return lambda name: descriptor_distance(prot, get_identity(name).descriptor) < SAME_PERSON_THRESHOLD + NEAR_IDENTITY_MARGIN


def test_identities_reading_near_the_face_are_tried_after_the_others(tmp_path, monkeypatch):
    # portrait_07.png: her look ranks girl_1 first, whose own image reads near her (its Mask read
    # 0.58 from her, and 0.57 pushed); with the pool's stored descriptors the farther identities of
    # her look are drafted first. A pool without them (a user's own) is tried in look order.
    img, face = _photo("portrait_07.png"), _faces("portrait_07.png")[0]
    near = _near(img, face)
    _, plain = _drafts(monkeypatch, img, face, _pool_copy(tmp_path, lambda e: e.pop("descriptor")))
    assert near(plain[0][0]), "the look order starts with an identity near her"
    res, drafts = _drafts(monkeypatch, img, face)
    ordered = [near(n) for n in dict.fromkeys(n for n, _ in drafts)]
    assert not ordered[0] and ordered == sorted(ordered), "farther identities first"
    assert get_identity(res.identities[0]).age == "child"


def test_near_identities_are_drafted_with_the_layout_pushed_at_once(monkeypatch):
    # portrait_06.png: the baby's look ranks the two girls first, both reading near him: each is
    # drafted once, pushed (as drafted plainly, girl_1 read 0.586 and was drafted again pushed).
    img, face = _photo("portrait_06.png"), _faces("portrait_06.png")[0]
    near = _near(img, face)
    res, drafts = _drafts(monkeypatch, img, face)
    pushed = [n for n, g in drafts if near(n)]
    assert pushed and len(pushed) == len(set(pushed)), drafts
    assert all(g == SwapParams().geometry * PUSH_GEOMETRY for n, g in drafts if near(n)), drafts


def test_a_bad_stored_descriptor_is_refused(tmp_path):
    pool = _pool_copy(tmp_path, lambda e: e.update(descriptor=[0.0] * 12))
    with pytest.raises(WeightsError, match="descriptor"):
        load_pool(pool)


def test_skin_tone_reads_the_cheeks_wherever_the_face_sits():
    # The same face padded into a larger photo, or cut by the photo's edge, reads the same tone;
    # a darker face reads a lower ITA angle.
    from imnkit.face.identities import skin_tone

    img = _photo("portrait_03.png")
    lm = _faces("portrait_03.png")[0].landmarks
    tone = skin_tone(img, lm)
    assert 0 < tone < 90
    padded = np.pad(img, ((40, 0), (70, 0), (0, 0)))
    assert skin_tone(padded, lm + [70, 40]) == tone
    darker = (img * 0.6).astype(np.uint8)
    assert skin_tone(darker, lm) < tone - 10
    x_cut = int(np.median(lm[:, 0]))  # the face's right half only: one cheek left
    assert np.isfinite(skin_tone(np.ascontiguousarray(img[:, x_cut:]), lm - [x_cut, 0]))
    assert np.isnan(skin_tone(img[:8, :8], lm))


def test_look_picks_matching_identities():
    # A baby gets a child, young women a woman's identity, a bald man a man's.
    for name, gender, ages in (("portrait_06.png", None, {"child"}), ("portrait_03.png", "f", {"young", "adult"}),
                               ("portrait_05.png", "f", {"child", "young", "adult"}),
                               ("portrait_08.jpg", "m", {"young", "adult", "senior"})):
        res = swap_faces(_photo(name), _faces(name)[:1], seed=0)
        ident = get_identity(res.identities[0])
        assert ident.age in ages, (name, ident.name)
        if gender:
            assert ident.gender == gender, (name, ident.name)
        assert res.distances[0] >= SAME_PERSON_THRESHOLD


def _region_lab(img, lm, outer, inner=None):
    """Mean Lab of ``img`` over the polygon of landmarks ``outer`` minus that of ``inner``."""
    import cv2

    def hull(idx):
        m = np.zeros(img.shape[:2], np.uint8)
        cv2.fillConvexPoly(m, cv2.convexHull(np.round(lm[idx]).astype(np.int32)), 1)
        return m
    sel = hull(outer) if inner is None else hull(outer) & (1 - hull(inner))
    return np.asarray(cv2.mean(cv2.cvtColor(img, cv2.COLOR_RGB2LAB), mask=sel)[:3])


@pytest.mark.parametrize("name,ident,feature,outer,inner,chan", [
    # A composite's red lips on a woman with paler ones (a* = redness) ...
    ("portrait_03.png", "woman_young_1", "lips", np.r_[48:60], np.r_[60:68], 1),
    ("portrait_04.png", "woman_young_2", "lips", np.r_[48:60], np.r_[60:68], 1),
    # ... and its bluish eyes on a dark-skinned woman's (b* < 128 = blue; woman_young_4 keeps a
    # composite's averaged eyes, the others' are one person's and mostly brown now).
    ("portrait_11.jpg", "woman_young_4", "eye", np.r_[36:42], None, 2),
])
def test_mask_features_take_the_photos_colour(name, ident, feature, outer, inner, chan):
    img = _photo(name)
    face = _faces(name)[0]
    want = _region_lab(img, np.asarray(face.landmarks), outer, inner)[chan]
    got = {}
    for on in (True, False):
        res = swap_faces(img, [face], replace=ident, params=SwapParams(feature_colour=on))
        lm = np.asarray(fit_landmarks(res.image, face.box))  # read off the Mask, as anyone would
        got[on] = _region_lab(res.image, lm, outer, inner)[chan]
    # 5 levels: the Mask's lip ring, read by dlib, takes in the edge of the drawn mouth (portrait_03's
    # broad smile reads 4.5 off; 3.7 while the protected lip corners still showed through the feather).
    assert abs(got[True] - want) < 5.0, (feature, got, want)
    assert abs(got[False] - want) > 7.0, (feature, got, want)  # the replacement's own colour


# ---------------------------------------------------------------- no ghost of the protected face


def _brow_hulls(shape, lm: np.ndarray) -> np.ndarray:
    """The convex hull of each protected brow's landmarks (the brow's arch down to its chord)."""
    import cv2

    m = np.zeros(shape, np.uint8)
    for idx in (np.r_[17:22], np.r_[22:27]):
        cv2.fillConvexPoly(m, cv2.convexHull(np.round(lm[idx]).astype(np.int32)), 1)
    return m.astype(bool)


def test_nothing_of_the_protected_brows_shows_through_the_mask():
    # The protected brows' hulls painted black: the Mask changes by at most one level (an eye's mean
    # tint is read on a polygon that reaches the brows), so none of their pixels shows through. With
    # the feathered edge alone (feature_cover=0) 20-30 % of the protected brows showed above the
    # Mask's own: a "ghost" pair (benchmarks/ghost.py measures it over the faces set). The grain
    # match and the expression passes are off: both read the whole face (the grain's spread; dlib on
    # each rendering), so any change to the photo moves every pixel a little.
    img, face = _photo("portrait_10.png"), _faces("portrait_10.png")[0]
    lm = np.asarray(face.landmarks, dtype=np.float64)
    hulls = _brow_hulls(img.shape[:2], lm)
    assert hulls.sum() > 300
    other = img.copy()
    other[hulls] = 0
    run = lambda im, **kw: swap_faces(im, [face], replace="man_adult_1", min_distance=None,  # noqa: E731
                                      params=SwapParams(expression_passes=0, grain=False, **kw)).image
    diff = lambda a, b: np.abs(a.astype(int) - b.astype(int)).max(axis=2)  # noqa: E731
    assert diff(run(img), run(other)).max() <= 1
    assert (diff(run(img, feature_cover=0.0), run(other, feature_cover=0.0)) > 8).sum() > 100
