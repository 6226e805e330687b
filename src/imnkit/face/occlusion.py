"""Occluders in front of a face stay in front of the Mask (glasses frames, medical masks, mics, hair).

Skin/colour segmentation against the landmarks, no model: the face's own skin colour is
sampled where occluders rarely are (the band under the eyes, the nose bridge and the forehead
above the brows; in colour photos only pixels inside a generic YCrCb skin box), as robust
statistics (median, MAD) of Cr and Cb (YCrCb) and of luma. Inside the face polygon (jaw line
and lifted brows), a pixel whose chroma is far from that skin, or that is much darker or
brighter than it while grey, is an occluder candidate. Eyes, brows and lips are not skin
either, so there a pixel counts only when the candidates around it are dense (a medical mask
over the mouth), not when they are a thin frame (glasses around an eye); eyes never so.
Small specks are dropped (opening), but thin long rims round an eye are kept whole (glasses
frames, also on dark skin); a small blob around an eye is the eye's own. An occluder over the
mouth (a medical mask) is grown to its outline by a watershed against the face's own pixels, so
its parts near skin colour (a pink side panel) stay too. The mask is feathered, and the
original pixels are put back over the Mask where it is set: what covered the face still covers it.

Light on skin (a lit cheek, a shiny nose tip: brighter than the skin, with most of its hue) is
not an occluder unless its part covers the mouth; white and grey occluders have no skin hue.
Skin-coloured occluders (a hand) are not found so; hands are found by a model
(:mod:`imnkit.face.hands`) and kept the same way. Limits (measured on ../shared/data/faces): a
dark beard, and shaded skin at the face's edge, count as occluders and are kept.
"""

from __future__ import annotations

import cv2
import numpy as np

from imnkit.face.detect import Box, Face

_WORK_SIZE = 160.0  # face size (px) the segmentation runs at
_FEATURES = (np.r_[17:22], np.r_[22:27], np.r_[36:42], np.r_[42:48], np.r_[31:36], np.r_[48:60])


def _poly(mask: np.ndarray, pts: np.ndarray, value: float = 1.0) -> None:
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, value, lineType=cv2.LINE_8, shift=4)


def _eyes(shape, local: np.ndarray) -> np.ndarray:
    """0/1 uint8 mask of the two eyes' landmark polygons."""
    eyes = np.zeros(shape, np.uint8)
    for idx in _FEATURES[2:4]:
        _poly(eyes, local[idx])
    return eyes


def _mouth(shape, local: np.ndarray) -> np.ndarray:
    """0/1 uint8 mask of the outer-lip polygon."""
    mouth = np.zeros(shape, np.uint8)
    _poly(mouth, local[48:60])
    return mouth


def _face_size(lm: np.ndarray) -> float:
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    return float(np.hypot(*(hi - lo)) / np.sqrt(2))


def _fill_holes(mask: np.ndarray, cand: np.ndarray, max_area: float) -> np.ndarray:
    """Fill the holes of a 0/1 uint8 mask that are mostly candidates themselves and under ``max_area``.

    The mouth under a medical mask is a hole of mask-coloured pixels and is filled; a glasses
    lens is a hole of skin and eye, and is not (the Mask's eyes show through it).
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats((mask == 0).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    out = mask.copy()
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if x > 0 and y > 0 and x + bw < w and y + bh < h and area <= max_area:
            hole = labels == i
            if cand[hole].mean() > 0.5:
                out[hole] = 1
    return out


def _covered_features(occ: np.ndarray, cand: np.ndarray, ycc: np.ndarray, local: np.ndarray,
                      size: float) -> np.ndarray:
    """Add the features (eyes, brows, mouth) that lie under the occluder around them.

    A feature is covered when occluders fill most of a ring around it and its own candidate
    pixels have their colour (a medical mask over the mouth); a glasses frame fills little of
    an eye's ring, and bare lips or teeth differ from the skin around them, so those stay.
    """
    out = occ.copy()
    ring_w = max(2, int(0.06 * size))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_w + 1, 2 * ring_w + 1))
    for idx in _FEATURES:
        poly = np.zeros(occ.shape, np.uint8)
        _poly(poly, local[idx])
        grown = cv2.dilate(poly, kernel, iterations=2)
        ring = (grown > 0) & (poly == 0)
        feat = (poly > 0) & cand
        if ring.sum() < 8 or feat.sum() < 4 or occ[ring].mean() < 0.6:
            continue
        around = np.median(ycc[ring & occ], axis=0)
        inside = np.median(ycc[feat], axis=0)
        if np.abs(around[1:] - inside[1:]).max() < 8 and abs(around[0] - inside[0]) < 40:
            out |= (grown > 0) & cand
    return out


def occluder_mask(image: np.ndarray, face: Face, *, strength: float = 1.0) -> tuple[np.ndarray, Box] | None:
    """Soft (h, w) float32 occluder alpha in [0, 1] over the returned box, or None if none is found.

    ``strength`` scales the distances a pixel must be from skin to be an occluder (higher finds fewer).
    """
    work = _work_area(image, face)
    if work is None:
        return None
    roi, local, poly, size, grow, z, box = work
    region = np.zeros(roi.shape[:2], np.float32)
    _poly(region, poly)
    polygon = region > 0
    inside = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))) > 0
    feats = np.zeros(roi.shape[:2], np.float32)
    for idx in _FEATURES:
        _poly(feats, local[idx])
    feats = cv2.dilate(feats, np.ones((3, 3), np.uint8), iterations=max(1, int(0.02 * size)))
    ycc = cv2.cvtColor(roi, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    grey = np.ptp(roi.astype(np.int16), axis=2).max() <= 2
    ref_sel = _skin_reference(roi.shape[:2], local, size, polygon, feats, ycc, grey)
    if ref_sel is None:
        return None
    cand = _candidates(ycc, ref_sel, grey, strength) & inside
    occ = _whole_occluders(cand, feats, ycc, local, size, inside, _lit_skin(ycc, ref_sel, grey))
    occ = _grow_mouth_cover(roi, occ, ref_sel, local, polygon, inside)
    if occ.sum() == 0:
        return None
    alpha = cv2.GaussianBlur(occ, (0, 0), max(0.7, 0.008 * size)) * inside
    if z < 1.0:
        alpha = cv2.resize(alpha, (box[3] - box[1], box[2] - box[0]), interpolation=cv2.INTER_LINEAR)
    alpha[alpha < 1.0 / 512] = 0.0
    return np.clip(alpha, 0.0, 1.0), box


def _work_area(image: np.ndarray, face: Face):
    """(roi, landmarks, face polygon, face size, feather, scale, box) at about _WORK_SIZE px, or None."""
    lm = np.asarray(face.landmarks, np.float64)
    size = _face_size(lm)
    if size < 24:
        return None
    hgt, wid = image.shape[:2]
    top = lm[17:27].copy()
    top[:, 1] -= 0.06 * size
    poly = np.vstack([lm[:17], top])
    grow = int(np.ceil(0.08 * size))  # the swap paints a little past the polygon (feathered edge)
    lo = np.floor(poly.min(axis=0)).astype(int) - 2 - grow
    hi = np.ceil(poly.max(axis=0)).astype(int) + 3 + grow
    x0, y0, x1, y1 = max(0, lo[0]), max(0, lo[1]), min(wid, hi[0]), min(hgt, hi[1])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    off = np.array([x0, y0], np.float64)
    roi = image[y0:y1, x0:x1]
    # Work at about _WORK_SIZE px per face: the segmentation is no better on more pixels, and
    # the morphology's cost grows with the face's area (0.4 s -> 0.03 s for a 550 px face).
    z = min(1.0, _WORK_SIZE / size)
    if z < 1.0:
        roi = cv2.resize(roi, (max(8, round(roi.shape[1] * z)), max(8, round(roi.shape[0] * z))),
                         interpolation=cv2.INTER_AREA)
        size, grow = size * z, max(1, int(np.ceil(grow * z)))
    return roi, (lm - off) * z, (poly - off) * z, size, grow, z, (y0, x0, y1, x1)


def _skin_reference(shape, local, size, polygon, feats, ycc, grey) -> np.ndarray | None:
    """Skin reference pixels: under-eye band, nose bridge, forehead strip above the brows."""
    ref = np.zeros(shape, np.float32)
    eye_l, eye_r = local[36:42].mean(0), local[42:48].mean(0)
    down = 0.12 * size
    for eye in (eye_l, eye_r):
        c = eye + [0, down]
        cv2.ellipse(ref, (int(c[0]), int(c[1])), (max(1, int(0.09 * size)), max(1, int(0.04 * size))), 0, 0, 360, 1.0, -1)
    bridge = local[27:31]
    _poly(ref, np.vstack([bridge - [0.03 * size, 0], bridge + [0.03 * size, 0]]))
    brow = local[17:27].copy()
    _poly(ref, np.vstack([brow - [0, 0.04 * size], brow - [0, 0.12 * size]]))
    ref_sel = (ref > 0) & polygon & (feats == 0)
    if ref_sel.sum() < 20:
        return None
    if not grey:
        # Only skin-like reference pixels (Chai & Ngan's YCrCb box): a medical mask reaching
        # under the eyes, or a white blob over the brow, must not become the skin reference.
        cr, cb = ycc[..., 1], ycc[..., 2]
        prior = (cr >= 133) & (cr <= 180) & (cb >= 77) & (cb <= 130)
        if (ref_sel & prior).sum() >= 20:
            ref_sel = ref_sel & prior
    return ref_sel


def _candidates(ycc, ref_sel, grey, strength) -> np.ndarray:
    """Pixels far from the skin reference in chroma (or luma, on grey photos), and near-black ones."""
    sample = ycc[ref_sel]
    med = np.median(sample, axis=0)
    mad = np.median(np.abs(sample - med), axis=0) * 1.4826 + [6.0, 2.5, 2.5]  # floors: noise, JPEG
    d_chroma = np.hypot((ycc[..., 1] - med[1]) / mad[1], (ycc[..., 2] - med[2]) / mad[2])
    d_luma = np.abs(ycc[..., 0] - med[0]) / mad[0]
    cand = (d_luma > 4.0 * strength) if grey else (
        (d_chroma > 3.0 * strength) | ((d_luma > 4.0 * strength) & (d_chroma > 1.5 * strength)))
    # Near-black is never skin, however dark the skin (black frames on dark skin differ from it
    # by less than its own spread in chroma).
    return cand | (ycc[..., 0] < min(60.0, 0.4 * med[0]) / strength)


def _lit_skin(ycc: np.ndarray, ref_sel: np.ndarray, grey: bool) -> np.ndarray:
    """Pixels brighter than the skin whose chroma still points the skin's way from grey: light on skin.

    A lit cheek or a shiny nose tip keeps most of the skin's hue (portrait_07: 60 %); a white or
    grey occluder (a medical mask, a white card) has none. Grey photos and grey-looking skin have
    no hue to tell them apart by: nothing is called lit there.
    """
    med = np.median(ycc[ref_sel], axis=0)
    hue = med[1:] - 128.0
    norm2 = float(hue @ hue)
    if grey or norm2 < 16.0:
        return np.zeros(ycc.shape[:2], bool)
    share = ((ycc[..., 1:] - 128.0) @ hue) / norm2
    return (ycc[..., 0] > med[0]) & (share >= 0.35)


def _whole_occluders(cand, feats, ycc, local, size, inside, lit) -> np.ndarray:
    """Candidates cleaned into whole occluders: features only inside dense ones, highlights on skin
    dropped, gaps closed, holes filled, specks dropped; float32 0/1."""
    # Features (eyes, brows, lips) are never skin: count them only inside dense occluders. Eyes
    # never count so (a dark iris beside a medical mask is still an eye); an eye under sunglasses
    # is taken by _covered_features (occluders all around it, of its colour).
    k = max(3, int(0.18 * size) | 1)
    bare = cand & (feats == 0)
    dens = cv2.blur(bare.astype(np.float32), (k, k))
    eyes = _eyes(cand.shape, local)
    occ = bare | (cand & (feats > 0) & (dens > 0.45) & (eyes == 0))
    occ = _covered_features(occ, cand, ycc, local, size).astype(np.uint8)
    r = max(1, int(0.015 * size))
    occ = cv2.morphologyEx(occ, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    occ = _drop_highlights(occ, lit, local, r)
    occ |= _frames(bare, local, size)
    # Close small gaps (a glasses frame broken where it crosses a brow, a mask's folds) and fill
    # holes enclosed by an occluder (the middle of a medical mask), so occluders stay whole.
    rc = max(1, int(0.03 * size))
    occ = cv2.morphologyEx(occ, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rc + 1, 2 * rc + 1)))
    occ = _fill_holes(occ, cand, max_area=0.15 * size * size) & inside.astype(np.uint8)
    return _drop_specks_and_eyes(occ, eyes, size)


def _drop_highlights(occ: np.ndarray, lit: np.ndarray, local: np.ndarray, r: int) -> np.ndarray:
    """``occ`` (0/1 uint8) without its ``lit`` skin pixels (:func:`_lit_skin`), except in parts over the mouth.

    Light on skin (a lit cheek, the nose tip's shine) is paler than the skin's own colour and
    would be kept, and show as pale patches on the Mask. A skin-coloured occluder over the mouth
    (a medical mask's pink panel) stays whole. Glasses frames are found apart (:func:`_frames`)
    and are not affected.
    """
    mouth = _mouth(occ.shape, local)
    n, labels = cv2.connectedComponents(occ, connectivity=8)
    over_mouth = np.zeros(n, bool)
    over_mouth[np.unique(labels[mouth > 0])] = True
    over_mouth[0] = False
    out = occ & ~(lit & ~over_mouth[labels]).astype(np.uint8)
    # What the highlight leaves at its rim is shading, not an occluder.
    return cv2.morphologyEx(out, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))


def _drop_specks_and_eyes(occ: np.ndarray, eyes: np.ndarray, size: float) -> np.ndarray:
    """Components of a 0/1 uint8 mask kept unless tiny or an eye's own; float32 0/1.

    A small component lying mostly around an eye is the eye itself (an iris the landmarks
    missed, lashes, a lid's shadow); glasses frames and sunglasses are longer.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(occ, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= max(12, 0.002 * size * size)
    r = max(1, int(0.1 * size))
    near = cv2.dilate(eyes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    in_eye = np.bincount(labels.ravel(), weights=near.ravel().astype(np.float64), minlength=n)
    small = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) < 0.22 * size
    keep &= ~(small & (in_eye >= 0.6 * np.maximum(1, stats[:, cv2.CC_STAT_AREA])))
    return keep[labels].astype(np.float32)


def _face_seeds(shape, ref_sel, local) -> np.ndarray:
    """Pixels surely of the face: the skin reference, eyes, brows and the nose bridge."""
    seeds = np.zeros(shape, np.uint8)
    for idx in (*_FEATURES[:4], np.r_[27:31]):
        _poly(seeds, local[idx])
    return (seeds > 0) | ref_sel


def _grow_mouth_cover(roi, occ, ref_sel, local, polygon, inside) -> np.ndarray:
    """A dense occluder over the mouth (a medical mask) grown to its outline, float32 0/1.

    Parts of the same object near skin colour (a mask's pink side panel) are cut from the face by
    the object's outline, not by colour: a watershed on the smoothed photo between the face's own
    pixels and the occluder (with what lies outside the face), kept where it joins the occluder.
    """
    mouth = _mouth(occ.shape, local) > 0
    if mouth.sum() < 4 or occ[mouth].mean() < 0.5:
        return occ
    markers = np.zeros(occ.shape, np.int32)
    markers[~cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)] = 2
    markers[cv2.erode(occ, np.ones((3, 3), np.uint8)) > 0] = 2
    markers[_face_seeds(occ.shape, ref_sel, local) & (occ == 0)] = 1
    # Smoothing first: a mask's mesh or a beard's hairs are texture, not an outline.
    lab = cv2.watershed(cv2.bilateralFilter(np.ascontiguousarray(roi), 7, 30, 5), markers)
    # Past the face polygon (where the swap feathers) only below the nose's middle: the mask's
    # edges there, not the forehead above the brows.
    down = local[48:60].mean(0) - local[36:48].mean(0)
    ys, xs = np.mgrid[:occ.shape[0], :occ.shape[1]]
    low = (xs - local[29, 0]) * down[0] + (ys - local[29, 1]) * down[1] > 0
    grown = ((lab == 2) & (polygon | (inside & low))) | (occ > 0)
    n, labels = cv2.connectedComponents(grown.astype(np.uint8), connectivity=8)
    joined = np.zeros(n, bool)
    joined[np.unique(labels[(occ > 0) & mouth])] = True
    joined[0] = False
    return np.maximum(occ, joined[labels].astype(np.float32))


def _glasses_band(shape, local: np.ndarray, size: float) -> np.ndarray:
    """0/1 uint8 band where glasses frames lie: from above the brows to below the eyes, temple to temple."""
    band = np.zeros(shape, np.uint8)
    up = local[17:27] - [0, 0.08 * size]
    low = local[[1, 15, 29]] + [0, 0.06 * size]
    _poly(band, np.vstack([up, local[[0, 16]], low]))
    return band


def _frames(bare: np.ndarray, local: np.ndarray, size: float) -> np.ndarray:
    """Thin, long occluder candidates around the eyes (glasses frames), 0/1 uint8.

    The opening that drops specks also erases a frame a few pixels wide (on dark skin only its
    thin dark core differs from the skin). A component of the glasses band that is long and
    passes above, below and beside an eye (a rim goes round a lens) is a frame, not a speck;
    brows, lids' creases, eye make-up and hair at the temples do not.
    """
    # Away from the face's outline, where hair and background would join a crease into one
    # long component.
    band = _glasses_band(bare.shape, local, size)
    hull = np.zeros(bare.shape, np.uint8)
    _poly(hull, local[:27])
    e = max(1, int(0.04 * size))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1, 2 * e + 1))
    band &= cv2.erode(hull, disk)
    # And away from the eyes: a rim passes beyond the lids, make-up and lashes do not.
    band &= 1 - cv2.dilate(_eyes(bare.shape, local), disk)
    thin = (bare & (band > 0)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(thin, connectivity=8)
    out = np.zeros(bare.shape, np.uint8)
    left, right = local[36:42].mean(0), local[42:48].mean(0)
    along = (right - left) / max(1e-6, float(np.hypot(*(right - left))))
    normal = np.array([-along[1], along[0]])  # points down the face
    for i in range(1, n):
        if max(stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]) < 0.25 * size:
            continue
        pts = np.stack(np.nonzero(labels == i)[::-1], axis=1).astype(np.float64)
        if any(_rings_eye(pts, eye, along, normal, size) for eye in (left, right)):
            out[pts[:, 1].astype(int), pts[:, 0].astype(int)] = 1
    return out


def _rings_eye(pts: np.ndarray, eye: np.ndarray, along: np.ndarray, normal: np.ndarray, size: float) -> bool:
    """True when the (x, y) points pass well above, well below and beside an eye, as a lens rim does.

    A brow or a lid's crease lies only above it, a crease under it only below; eye make-up stays
    close to it.
    """
    u, v = (pts - eye) @ along, (pts - eye) @ normal
    over = np.abs(u) < 0.1 * size
    beside = (np.abs(u) > 0.16 * size) & (np.abs(v) < 0.04 * size)
    return bool((over & (v < -0.07 * size)).any() and (over & (v > 0.07 * size)).any() and beside.any())


#: Faces smaller than this (px) are not searched for hands: a hand in front of them is a few
#: dozen pixels, and each palm search costs ~50 ms (29 small faces took 2.5 s).
HAND_MIN_FACE = 64
HAND_MAX_SQUARES = 3
HAND_FACE_SHARE = 5.0


def hand_squares(faces: list[Face]) -> list[tuple[float, float, float]]:
    """Squares (cx, cy, side) the palm detector searches: around each face, 3 face sizes across.

    A hand in front of a face is about its size and its palm lies at most a face below the chin
    (a fist holding a mic). Squares are merged while every face of the merged square still
    spans 1/HAND_FACE_SHARE of it (a palm of ~25 px at the detector's 192 px input); the largest
    faces' squares come first, at most HAND_MAX_SQUARES of them (~50 ms each).
    """
    sized = sorted(((_face_size(np.asarray(f.landmarks, np.float64)), f) for f in faces), key=lambda t: -t[0])
    groups: list[tuple[np.ndarray, np.ndarray, float]] = []  # (lo, hi, smallest face size)
    for size, face in sized:
        if size < HAND_MIN_FACE:
            break
        lm = np.asarray(face.landmarks, np.float64)
        c = (lm.min(axis=0) + lm.max(axis=0)) / 2
        lo, hi = c - 1.5 * size, c + 1.5 * size
        for i, (glo, ghi, gmin) in enumerate(groups):
            mlo, mhi = np.minimum(lo, glo), np.maximum(hi, ghi)
            if min(size, gmin) >= float(max(mhi - mlo)) / HAND_FACE_SHARE:
                groups[i] = (mlo, mhi, min(size, gmin))
                break
        else:
            groups.append((lo, hi, size))
    return [(float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, float(max(hi - lo)))
            for lo, hi, _ in groups[:HAND_MAX_SQUARES]]


def keep_occluders(protected: np.ndarray, masked: np.ndarray, faces: list[Face],
                   regions: list[Box | None], *, strength: float = 1.0,
                   hands: bool = True) -> tuple[np.ndarray, list[float]]:
    """Put the occluders of each face back over the Mask image; returns (image, occluded fraction per face).

    Only pixels inside each face's changed region are touched, so the result still equals the
    protected photo outside ``regions``. With ``hands``, hands found in front of a face
    (:func:`imnkit.face.hands.find_hands`) are kept too: their colour is the face's, so the
    segmentation misses them.
    """
    out = masked.copy()
    fractions: list[float] = []
    found_hands = []
    searched = [f for f, r in zip(faces, regions) if r is not None]
    if hands and searched:
        from imnkit.face.hands import find_hands

        # Once per photo: a hand may cover two faces' regions.
        found_hands = find_hands(protected, hand_squares(searched), near=[r for r in regions if r is not None])
    for face, reg in zip(faces, regions):
        if reg is None:
            fractions.append(0.0)
            continue
        ry0, rx0, ry1, rx1 = (max(0, reg[0]), max(0, reg[1]), min(protected.shape[0], reg[2]),
                              min(protected.shape[1], reg[3]))
        if ry1 <= ry0 or rx1 <= rx0:
            fractions.append(0.0)
            continue
        clip = np.zeros((ry1 - ry0, rx1 - rx0), np.float32)
        found = occluder_mask(protected, face, strength=strength)
        area = float(clip.size)
        if found is not None:
            alpha, (y0, x0, y1, x1) = found
            area = float(alpha.size)
            cy0, cx0, cy1, cx1 = max(y0, ry0), max(x0, rx0), min(y1, ry1), min(x1, rx1)
            if cy1 > cy0 and cx1 > cx0:
                clip[cy0 - ry0:cy1 - ry0, cx0 - rx0:cx1 - rx0] = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        if found_hands:
            from imnkit.face.hands import hand_region

            held = hand_region(found_hands, (ry0, rx0, ry1, rx1))
            if held is not None:
                clip = np.maximum(clip, held)
        if not clip.any():
            fractions.append(0.0)
            continue
        a = clip[..., None]
        cur = out[ry0:ry1, rx0:rx1].astype(np.float32)
        orig = protected[ry0:ry1, rx0:rx1].astype(np.float32)
        out[ry0:ry1, rx0:rx1] = np.clip(np.rint(cur + a * (orig - cur)), 0, 255).astype(np.uint8)
        fractions.append(round(float((clip > 0.5).sum()) / max(1.0, area), 4))
    return out, fractions
