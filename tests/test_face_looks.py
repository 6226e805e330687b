"""Choosing identities by look (imnkit.face.looks): which looks may stand for a face at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imnkit.face.identities import Identity
from imnkit.face.looks import MIN_ACCEPTABLE, Look, acceptable, look_groups


def _ident(name: str, gender: str, age: str, tone: float = float("nan")) -> Identity:
    # The image is read lazily: choosing never opens it.
    return Identity(name, Path("/nonexistent.png"), np.zeros((68, 2), np.float32), "", "", gender, age, tone)


POOL = [_ident(f"{g}_{a}_{k}", g, a) for g in ("f", "m") for a in ("child", "young", "adult", "senior") for k in range(3)]


def test_acceptable_keeps_gender_and_age_reach():
    man = Look(gender=-0.9, age=2.0, tone=float("nan"))
    assert acceptable(man, _ident("a", "m", "adult")) and acceptable(man, _ident("b", "m", "senior"))
    assert acceptable(man, _ident("c", "m", "young"))
    assert not acceptable(man, _ident("d", "f", "adult"))
    assert not acceptable(man, _ident("e", "m", "child"))  # an adult never gets a child's identity
    child = Look(gender=0.8, age=0.1, tone=float("nan"))
    assert acceptable(child, _ident("f", "f", "child")) and acceptable(child, _ident("g", "f", "young"))
    assert not acceptable(child, _ident("h", "f", "adult"))  # a child never an adult's
    # a child's gender presentation is hardly readable: a boy's identity stays acceptable (the baby of
    # portrait_06, read +0.33, got a young woman's identity when only girls' and women's were offered)
    assert acceptable(child, _ident("k", "m", "child"))
    assert not acceptable(Look(gender=0.8, age=1.0, tone=float("nan")), _ident("l", "m", "young"))
    unsure = Look(gender=0.1, age=1.0, tone=float("nan"))
    assert acceptable(unsure, _ident("i", "m", "young")) and acceptable(unsure, _ident("j", "f", "young"))


def test_a_face_not_clearly_a_childs_is_never_offered_a_childs_identity():
    # A young man read 0.63 (multi_10) got a girl's identity once the young men's were taken in a
    # crowded photo: child identities were within the age reach. Now only clear children get them.
    young = Look(gender=-0.2, age=0.63, tone=float("nan"))
    assert not acceptable(young, _ident("a", "m", "child")) and not acceptable(young, _ident("b", "f", "child"))
    assert acceptable(young, _ident("c", "m", "young"))
    near, rest = look_groups(young, POOL, seed=0)
    assert not any("child" in n for n in near + rest)
    clear = Look(gender=0.0, age=0.2, tone=float("nan"))
    assert acceptable(clear, _ident("d", "f", "child"))


def test_other_looks_only_fill_up_to_the_tries():
    man = Look(gender=-0.9, age=2.0, tone=float("nan"))
    near, rest = look_groups(man, POOL, seed=0)
    names = near + rest
    # 9 men's identities (young, adult, senior) are acceptable: no woman's or child's is offered.
    assert len(names) == 9 and all(n.startswith("m_") and "child" not in n for n in names)
    assert set(near) == {"m_adult_0", "m_adult_1", "m_adult_2"}
    # A pool with too few acceptable identities is topped up to MIN_ACCEPTABLE, best cost first.
    small = [i for i in POOL if i.gender == "f" or i.age == "adult"]
    near, rest = look_groups(man, small, seed=0)
    assert len(near) + len(rest) == MIN_ACCEPTABLE
    assert sorted(rest[:3]) == ["f_adult_0", "f_adult_1", "f_adult_2"] and all(n.startswith("f_") for n in rest)


def test_a_darker_skinned_face_gets_darker_skinned_identities_of_its_look_first():
    pool = [_ident(f"w{k}", "f", "young", tone) for k, tone in enumerate((55.0, 50.0, 48.0, 26.7, 60.0))]
    for salt in range(5):
        dark, _ = look_groups(Look(gender=0.9, age=1.0, tone=-40.0), pool, seed=0, salt=salt)
        assert dark[0] == "w3"
        light, _ = look_groups(Look(gender=0.9, age=1.0, tone=45.0), pool, seed=0, salt=salt)
        assert sorted(light) == sorted(dark)  # the same group, only the order differs
    # a grey photo (no tone) keeps the seeded order
    grey = [look_groups(Look(gender=0.9, age=1.0, tone=float("nan")), pool, seed=0, salt=s)[0][0] for s in range(8)]
    assert len(set(grey)) > 1


def test_mirror_landmarks_swap_sides_and_keep_the_midline():
    from imnkit.face.looks import MIRROR_68

    assert sorted(MIRROR_68.tolist()) == list(range(68))
    assert (MIRROR_68[MIRROR_68] == np.arange(68)).all()  # mirroring twice is the face again
    assert MIRROR_68[0] == 16 and MIRROR_68[36] == 45 and MIRROR_68[39] == 42 and MIRROR_68[48] == 54
    assert all(MIRROR_68[k] == k for k in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66))


def test_mirrored_descriptor_is_the_descriptor_of_the_mirror_image():
    # The look is read from the mean of a face's descriptor and its mirror image's; the mirror
    # crop must give what the whole photo flipped gives, and a photo's mirror of its mirror the face.
    from _photos import photo

    from imnkit.face.descriptors import descriptor_distance, face_descriptor
    from imnkit.face.detect import detect_faces, make_face
    from imnkit.face.looks import MIRROR_68, look_descriptor, mirrored_descriptor, read_look

    img = photo("portrait_03.png")
    face = detect_faces(img).faces[0]
    flipped = np.ascontiguousarray(img[:, ::-1])
    lm = face.landmarks[MIRROR_68].copy()
    lm[:, 0] = img.shape[1] - 1 - lm[:, 0]
    y0, x0, y1, x1 = face.box
    mirror_face = make_face(lm, (y0, img.shape[1] - x1, y1, img.shape[1] - x0))
    whole = face_descriptor(flipped, mirror_face)
    assert descriptor_distance(mirrored_descriptor(img, face), whole) < 0.02
    assert descriptor_distance(mirrored_descriptor(flipped, mirror_face), face_descriptor(img, face)) < 0.02
    own = face_descriptor(img, face)
    assert np.allclose(look_descriptor(img, face, own), (own + whole) / 2, atol=0.01)
    look = read_look(img, face, tone=50.0, descriptor=own)
    assert look.gender > 0.25  # portrait_03: a young woman


def test_context_features_read_what_surrounds_the_face():
    # Hair falling beside the jaw reads darker than the cheek there; a plain photo reads nothing.
    from imnkit.face.identities import load_pool
    from imnkit.face.looks import CONTEXT_PATCHES, context_features

    lm = np.asarray(load_pool()[0].landmarks, dtype=np.float64)
    plain = np.full((384, 384, 3), 180, np.uint8)
    assert np.allclose(context_features(plain, lm), 0.0)
    hair = plain.copy()
    jaw_x = lm[[0, 16], 0]
    hair[:, : int(jaw_x.min()) - 2] = 40
    hair[:, int(jaw_x.max()) + 2:] = 40
    ctx = context_features(hair, lm).reshape(len(CONTEXT_PATCHES) - 1, 3)
    assert ctx[0, 0] < -1.0 and ctx[1, 0] < -1.0  # beside the jaw, at mouth and chin height: dark
    assert abs(ctx[2, 0]) < 1e-9 and abs(ctx[3, 0]) < 1e-9  # above the forehead, below the chin: as the cheek
    grey = context_features(hair, lm).reshape(-1, 3)
    assert np.allclose(grey[:, 1:], 0.0)  # a grey photo gives lightness only
