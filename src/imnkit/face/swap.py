"""Classical landmark-driven face swap: the "Mask" face (another identity, same pose/light).

For each protected face:

1. Geometry. The target landmarks are the protected face's, with each feature (brows, eyes,
   nose, mouth) moved, turned and scaled onto the replacement identity's layout (``geometry``,
   1 by default) while keeping its own shape, so eye and mouth openness (expression) and the
   jaw line stay the protected face's. Where features sit is a large part of what a recogniser
   sees; the pixel texture alone moves dlib's distance past 0.6 for only ~80% of faces.
2. Warp. The replacement face is warped piecewise-affinely (Delaunay triangles over its 68
   landmarks plus a ring of points around them) onto the target landmarks; pose is kept.
3. Colour. Lab mean and spread are matched on skin only (the face minus brows, eyes and mouth,
   which differ in darkness between people), then the protected face's low-frequency shading
   (masked Gaussian, ``light_sigma`` x face size) replaces the replacement's, so the light
   falling on the face is kept. A grey photo stays grey.
4. Blend. A feathered mask over the jaw line and (slightly lifted) brows, or Poisson cloning
   (``blend="poisson"``). An open mouth keeps the protected mouth's inside (teeth, tongue).
5. Check (``swap_faces(min_distance=0.6)``, the default). dlib's recogniser re-measures the
   swapped face; while it is still the same person, the pool's other identities are tried.

Only pixels inside the returned region differ from the input; the result is a pure function of
its inputs (identities are dealt from a seeded permutation).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal, Sequence

import cv2
import numpy as np

from imnkit.errors import UsageError
from imnkit.face.align import umeyama, apply_affine
from imnkit.face.detect import Box, Face, check_image, fit_landmarks, make_face
from imnkit.face.identities import Identity, assign_identities, get_identity, identity_names, load_pool
from imnkit.face.identity import descriptor_distance, face_descriptor
from imnkit.face.warp import delaunay, piecewise_affine


@dataclass(frozen=True)
class SwapParams:
    """Tuning of the classical swap (all lengths are fractions of the face size)."""

    feather: float = 0.05  # Gaussian sigma of the mask edge
    erode: float = 0.02  # how far inside the landmark hull the mask edge starts
    brow_lift: float = 0.06  # raise the mask's top edge above the brows (covers them)
    light_sigma: float = 0.3  # sigma of the low-frequency shading taken from the protected face
    color_std: bool = True  # also match the spread of each Lab channel, not only the mean
    geometry: float = 1.0  # 0: protected feature layout; 1: replacement's (expression kept)
    keep_mouth: bool = True  # keep the protected face's open-mouth inside
    blend: Literal["feather", "poisson"] = "feather"


@dataclass(frozen=True, eq=False)
class SwapResult:
    """The Mask image and where it differs from the protected photo."""

    image: np.ndarray  # HxWx3 uint8 RGB
    region: Box | None  # (y0, x0, y1, x1), exclusive ends, of all changed pixels; None: unchanged
    face_regions: list[Box | None] = field(default_factory=list)  # per face, same convention
    identities: list[str] = field(default_factory=list)  # pool identity used for each face
    distances: list[float | None] = field(default_factory=list)  # dlib protected-vs-Mask, if checked


_RING_SCALE = 1.6
_MOUTH_OPEN = 0.08  # inner-lip gap / face size above which the mouth counts as open


def _face_size(lm: np.ndarray) -> float:
    """A robust face scale: the landmark box diagonal / sqrt(2) (about the face width)."""
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    return float(np.hypot(*(hi - lo)) / np.sqrt(2))


def _ring(lm: np.ndarray) -> np.ndarray:
    """Points around the face (jaw + brows pushed out from the centre) so the warp covers the
    mask's feathered edge."""
    c = lm.mean(axis=0)
    return c + _RING_SCALE * (lm[:27] - c)


@functools.lru_cache(maxsize=16)
def _triangles(key: str, points_bytes: bytes) -> np.ndarray:
    pts = np.frombuffer(points_bytes, dtype=np.float64).reshape(-1, 2)
    return delaunay(pts)


# Feature groups of the 68-point scheme and the expression-stable anchor points of each (brow
# ends, eye corners, nose bridge/tip/wings, mouth corners): the layout transfer moves and
# scales each feature by its anchors only, so eye and mouth openness (expression) are kept.
_GROUPS = (
    (np.r_[17:22], np.array([17, 19, 21])),
    (np.r_[22:27], np.array([22, 24, 26])),
    (np.r_[27:36], np.array([27, 30, 31, 35])),
    (np.r_[36:42], np.array([36, 39])),
    (np.r_[42:48], np.array([42, 45])),
    (np.r_[48:68], np.array([48, 54, 51, 57])),
)
_FRAME = np.r_[0:17, 27, 30, 33, 36, 39, 42, 45]  # points the replacement layout is fitted on


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine (2, 3) mapping src -> dst; it absorbs yaw/pitch foreshortening."""
    a = np.c_[src, np.ones(len(src))]
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T


def _target_landmarks(protected: np.ndarray, replacement: np.ndarray, geometry: float) -> np.ndarray:
    """Protected landmarks with the features moved ``geometry`` of the way to the replacement's layout.

    The replacement's landmarks are mapped onto the protected face by an affine fitted on the
    jaw line and the eye/nose anchors (so pose foreshortening is matched, not undone). Each
    feature (brow, eye, nose, mouth) of the protected face is then moved, turned and scaled by
    the similarity that takes its anchor points to the replacement's, keeping its own shape,
    i.e. its expression. The jaw line stays the protected one.
    """
    out = protected.astype(np.float64).copy()
    if geometry == 0.0:
        return out
    rep = apply_affine(_fit_affine(replacement[_FRAME], protected[_FRAME]), replacement)
    for idx, anchors in _GROUPS:
        m = umeyama(protected[anchors], rep[anchors])
        moved = apply_affine(m, protected[idx])
        out[idx] = protected[idx] + geometry * (moved - protected[idx])
    return out


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas run on a shrunken copy (the result is smooth anyway)."""
    f = sigma / 4.0
    if f <= 1.5:
        return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _masked_blur(img: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian mean of ``img`` over ``mask`` only (normalised convolution)."""
    m = mask.astype(np.float32)
    num = _blur(img * m[..., None], sigma)
    den = _blur(m, sigma)
    return num / np.maximum(den, 1e-4)[..., None]


def _erode(mask: np.ndarray, radius: float) -> np.ndarray:
    """Erode a 0/1 uint8 mask by a disc of ``radius`` px (distance transform: O(pixels) for any radius).

    Beyond the array counts as inside the mask: the region is clipped only at the photo's
    border, where a face cut by the frame must still be covered up to the edge.
    """
    if radius <= 0:
        return mask.copy()
    padded = np.pad(mask, 1, constant_values=1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return (dist > radius).astype(np.uint8)


def _poly_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask


def swap_face(
    image: np.ndarray,
    face: Face,
    identity: Identity,
    params: SwapParams = SwapParams(),
) -> tuple[np.ndarray, Box | None]:
    """Put ``identity`` over one face; returns (new image, box of changed pixels or None)."""
    image = check_image(image)
    h, w = image.shape[:2]
    prot = np.asarray(face.landmarks, dtype=np.float64)
    rep = np.asarray(identity.landmarks, dtype=np.float64)
    size = _face_size(prot)
    target = _target_landmarks(prot, rep, params.geometry)

    # Mask polygon: jaw line plus the brows lifted a little (so the brows are swapped too).
    top = np.where((target[17:27, 1] < prot[17:27, 1])[:, None], target[17:27], prot[17:27])
    top[:, 1] -= params.brow_lift * size
    mask_pts = np.vstack([target[:17], top])
    ring_t = _ring(target)
    src_pts = np.vstack([rep, _ring(rep)])
    dst_pts = np.vstack([target, ring_t])

    lo = np.floor(np.minimum(dst_pts.min(axis=0), mask_pts.min(axis=0))) - 2
    hi = np.ceil(np.maximum(dst_pts.max(axis=0), mask_pts.max(axis=0))) + 3
    x0, y0 = max(0, int(lo[0])), max(0, int(lo[1]))
    x1, y1 = min(w, int(hi[0])), min(h, int(hi[1]))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return image.copy(), None
    box = (y0, x0, y1, x1)

    # Pre-shrink the replacement when the face is much smaller, so the remap does not alias.
    src = identity.image
    scale = float(np.sqrt(abs(np.linalg.det(umeyama(rep, target)[:, :2]))))
    if scale < 0.8:
        src = cv2.resize(src, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        src_pts = src_pts * scale
    tri = _triangles(identity.name, np.ascontiguousarray(np.vstack([rep, _ring(rep)])).tobytes())
    warped, covered = piecewise_affine(src, src_pts, dst_pts, tri, box, interpolation=cv2.INTER_LINEAR)

    local = dst_pts - [x0, y0]
    roi = image[y0:y1, x0:x1]
    hull = _poly_mask(roi.shape[:2], mask_pts - [x0, y0])
    inner = _erode(hull, params.erode * size)
    # Keep the feathered edge (~3 sigma) inside the warped area, so alpha never meets its edge.
    inner &= _erode(covered.astype(np.uint8), 3 * params.feather * size)
    if inner.sum() < 16:
        return image.copy(), None

    # Colour statistics come from skin only (the face minus brows, eyes and mouth of both the
    # protected and the target layout): features differ in darkness between people, and
    # matching them would shift the skin tone.
    skin = inner.copy()
    feat_pts = [np.r_[17:22, 36:42], np.r_[22:27, 42:48], np.r_[48:60]]
    for pts in (prot - [x0, y0], local):
        for idx in feat_pts:
            cv2.fillConvexPoly(skin, cv2.convexHull(np.round(pts[idx] * 16).astype(np.int32)), 0,
                               lineType=cv2.LINE_8, shift=4)
    if skin.sum() < 0.2 * inner.sum():
        skin = inner
    p_lab = cv2.cvtColor(roi, cv2.COLOR_RGB2LAB).astype(np.float32)
    w_lab = cv2.cvtColor(warped, cv2.COLOR_RGB2LAB).astype(np.float32)
    sel = skin.astype(bool)
    mu_p, mu_w = p_lab[sel].mean(axis=0), w_lab[sel].mean(axis=0)
    if params.color_std:
        ratio = np.clip(p_lab[sel].std(axis=0) / np.maximum(w_lab[sel].std(axis=0), 1e-3),
                        [0.67, 0.1, 0.1], [1.5, 1.5, 1.5])
    else:
        ratio = np.ones(3, np.float32)
    w_lab = (w_lab - mu_w) * ratio + mu_p
    if params.light_sigma > 0:
        sig = params.light_sigma * size
        w_lab += _masked_blur(p_lab, skin, sig) - _masked_blur(w_lab, skin, sig)
    w_rgb = cv2.cvtColor(np.clip(np.rint(w_lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    if np.ptp(roi.astype(np.int16), axis=2).max() <= 2:  # a grey photo stays grey
        grey = np.rint(w_rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
        w_rgb = np.repeat(grey, 3, axis=2)

    if params.blend == "poisson":
        out = image.copy()
        clone_mask = (inner * 255).astype(np.uint8)
        ys, xs = np.nonzero(clone_mask)
        # seamlessClone centres the mask's bounding box at ``center``.
        cx = x0 + (xs.min() + xs.max() + 1) // 2
        cy = y0 + (ys.min() + ys.max() + 1) // 2
        full = image.copy()
        full[y0:y1, x0:x1] = w_rgb
        pad_mask = np.zeros((h, w), np.uint8)
        pad_mask[y0:y1, x0:x1] = clone_mask
        cloned = cv2.seamlessClone(full, image, pad_mask, (int(cx), int(cy)), cv2.NORMAL_CLONE)
        alpha = inner.astype(np.float32)
        out_roi = cloned[y0:y1, x0:x1]
    else:
        alpha = _blur(inner.astype(np.float32), max(0.5, params.feather * size))
        alpha *= covered
        out_roi = w_rgb
    if params.keep_mouth:
        gap = np.linalg.norm(target[66] - target[62]) / size
        rep_gap = np.linalg.norm(rep[66] - rep[62]) / _face_size(rep)
        # Either mouth open: keep the protected inside (its teeth, or its closed lips' line
        # rather than the replacement's teeth squeezed into it).
        if gap > _MOUTH_OPEN or rep_gap > _MOUTH_OPEN:
            mouth = _poly_mask(roi.shape[:2], local[60:68]).astype(np.float32)
            mouth = cv2.GaussianBlur(mouth, (0, 0), max(0.5, 0.015 * size))
            alpha = alpha * (1.0 - mouth)
    alpha[alpha < 1.0 / 512] = 0.0

    roi_f = roi.astype(np.float32)
    new = np.rint(roi_f + alpha[..., None] * (out_roi.astype(np.float32) - roi_f))
    new = np.clip(new, 0, 255).astype(np.uint8)
    out = image.copy()
    out[y0:y1, x0:x1] = new
    changed = np.any(new != roi, axis=2)
    if not changed.any():
        return out, None
    ys = np.nonzero(changed.any(axis=1))[0]
    xs = np.nonzero(changed.any(axis=0))[0]
    return out, (y0 + int(ys[0]), x0 + int(xs[0]), y0 + int(ys[-1]) + 1, x0 + int(xs[-1]) + 1)


def union_box(boxes: Sequence[Box | None]) -> Box | None:
    """Smallest box holding all given boxes (None entries ignored)."""
    real = [b for b in boxes if b is not None]
    if not real:
        return None
    return (min(b[0] for b in real), min(b[1] for b in real),
            max(b[2] for b in real), max(b[3] for b in real))


def _mask_distance(protected_desc: np.ndarray, mask_image: np.ndarray, face: Face) -> float:
    """dlib distance between the protected face and the swapped one, re-landmarked in place."""
    swapped = make_face(fit_landmarks(mask_image, face.box), face.box)
    return descriptor_distance(protected_desc, face_descriptor(mask_image, swapped))


@functools.lru_cache(maxsize=4)
def _pool_descriptors(pool: str | None) -> dict[str, np.ndarray]:
    """dlib descriptors of the pool identities (for ``assign="similar"``)."""
    out = {}
    for ident in load_pool(pool):
        lo, hi = ident.landmarks.min(axis=0), ident.landmarks.max(axis=0)
        box = (int(lo[1]), int(lo[0]), int(hi[1]) + 1, int(hi[0]) + 1)
        out[ident.name] = face_descriptor(np.ascontiguousarray(ident.image), make_face(ident.landmarks, box))
    return out


def swap_faces(
    image: np.ndarray,
    faces: Sequence[Face],
    *,
    seed: int = 0,
    replace: str | Sequence[str] | None = None,
    params: SwapParams = SwapParams(),
    min_distance: float | None = 0.6,
    assign: Literal["seeded", "similar"] = "seeded",
    pool: str | None = None,
) -> SwapResult:
    """Make the Mask image: every face in ``faces`` gets a replacement identity.

    Args:
        image: HxWx3 uint8 RGB protected photo.
        faces: faces from :func:`imnkit.face.detect.detect_faces` (order matters for seeding).
        seed: picks the identities reproducibly; faces of one photo get different ones while
            the pool lasts.
        replace: one pool identity name for every face, or one name per face (no retries).
        params: swap tuning, see :class:`SwapParams`.
        min_distance: check each swapped face with dlib's recogniser and, while it is closer
            than this to the protected face, try the pool's other identities (unused ones
            first), keeping the first that is far enough, else the farthest. None: no check.
        assign: ``"seeded"`` deals a seeded permutation of the pool; ``"similar"`` gives each
            face the unused identity whose dlib descriptor is nearest its own (similar
            gender/age look, so the Mask looks more natural), the seed breaking ties, and
            relies on ``min_distance`` to keep it a different person.
        pool: folder of another identity pool (default: the built-in one).

    Returns:
        :class:`SwapResult`; outside ``region`` the image equals the input bit for bit.
    """
    image = check_image(image)
    faces = list(faces)
    if assign not in ("seeded", "similar"):
        raise UsageError(f"assign must be 'seeded' or 'similar', got {assign!r}")
    pool_names = identity_names(pool)
    fixed = replace is not None
    if replace is None:
        names = assign_identities(len(faces), seed, pool_names)
    elif isinstance(replace, str):
        names = [replace] * len(faces)
    else:
        names = list(replace)
        if len(names) != len(faces):
            raise UsageError(f"replace lists {len(names)} identities for {len(faces)} faces")
    for n in names:
        get_identity(n, pool)  # fail early, naming the valid identities
    order = assign_identities(len(pool_names), seed, pool_names)  # the seeded permutation

    out = image
    regions: list[Box | None] = []
    used: list[str] = []
    distances: list[float | None] = []
    for face, first in zip(faces, names):
        prot_desc = None
        if fixed:
            tries = [first]
        else:
            if assign == "similar":
                prot_desc = face_descriptor(image, face)
                pool_desc = _pool_descriptors(pool)
                rank = {n: i for i, n in enumerate(order)}
                cands = sorted(pool_names, key=lambda n: (descriptor_distance(prot_desc, pool_desc[n]), rank[n]))
            else:
                cands = order[order.index(first):] + order[: order.index(first)]
            # Unused identities first, so faces of one photo differ while the pool lasts.
            tries = [n for n in cands if n not in used] + [n for n in cands if n in used]
        if min_distance is None:
            name = tries[0]
            out, reg = swap_face(out, face, get_identity(name, pool), params)
            dist: float | None = None
        else:
            if prot_desc is None:
                prot_desc = face_descriptor(image, face)
            best = None
            for cand_name in tries:
                cand, cand_reg = swap_face(out, face, get_identity(cand_name, pool), params)
                cand_dist = _mask_distance(prot_desc, cand, face)
                if best is None or cand_dist > best[0]:
                    best = (cand_dist, cand_name, cand, cand_reg)
                if cand_dist >= min_distance:
                    break
            dist, name, out, reg = best
        regions.append(reg)
        used.append(name)
        distances.append(dist)
    if out is image:
        out = image.copy()
    # Faces may overlap, so the final region is recomputed from the real differences.
    diff = np.any(out != image, axis=2)
    if diff.any():
        ys = np.nonzero(diff.any(axis=1))[0]
        xs = np.nonzero(diff.any(axis=0))[0]
        region: Box | None = (int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1)
    else:
        region = None
    return SwapResult(image=out, region=region, face_regions=regions, identities=used,
                      distances=distances)
