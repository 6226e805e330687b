"""Classical landmark-driven face swap: the "Mask" face (another identity, same pose/light).

For each protected face:

1. Geometry (``_target_landmarks``). The target landmarks wear the protected face's
   expression on the replacement's layout: eye positions and spacing, nose, where the mouth
   sits and lip thickness come from the replacement (mapped onto the face by an affine fitted
   on the jaw and eye/nose anchors, so pose is kept); each eye's shape (its opening), the inner
   lips (mouth opening), the mouth width relative to the eye-corner distance and the brows'
   height over the eyes come from the protected face; the jaw line stays the protected one.
2. Warp. The replacement face is warped piecewise-affinely (Delaunay triangles over its 68
   landmarks plus a ring of points around them) onto the target landmarks.
3. Colour, light, grain. Lab mean and spread are matched on skin only (the face minus brows,
   eyes and mouth), with lightness as log(L* + 16) so shading and dark features scale with the
   skin's lightness; the protected face's low-frequency shading (masked Gaussian,
   ``light_sigma`` x face size) replaces the replacement's; each eye (with lids and lashes) is
   sharpened or softened to the protected eye's sharpness, and the replacement is blurred when
   sharper than the photo and given seeded grain up to the photo skin's noise
   (:mod:`imnkit.face.detail`). The lips then take the protected lips' mean colour and the eyes
   (with lids and lashes) their tint (``feature_colour``). A grey photo stays grey.
4. Blend. A feathered mask over the jaw line and (slightly lifted) brows of both layouts, or
   Poisson cloning (``blend="poisson"``); the protected brows, eyes, nose and mouth, and a margin
   around them (``feature_cover``), are covered fully, so none of them shows through the feather. The mouth's inside (teeth, tongue; for a closed mouth its lip line)
   is synthesised on the target inner lips, shaded from the Mask's own skin and lips
   (:mod:`imnkit.face.mouth`): no pixel of the protected mouth is used. ``mouth="original"``
   (opt-in, logged as a warning) warps the protected mouth's inside there instead, as before.
5. Expression correction (``expression_passes``). The Mask is re-landmarked and the target's
   mouth opening, mouth width and eye opening corrected by what dlib reads off it, then
   rendered again; the rendering that reads closest is kept.
6. Check (``swap_faces(min_distance=0.6)``, the default). dlib's recogniser re-measures the
   swapped face; while it is still the same person, or its expression reads off, the next
   identities are tried; one that just misses is tried once with its layout pushed away from
   the protected face's. Identities are chosen by look (:mod:`imnkit.face.looks`); within a
   look, those whose own image already reads near the face go last, pushed at once.

Only pixels inside the returned region differ from the input; the result is a pure function of
its inputs (identity order: seeded, salted by each face's descriptor).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from typing import Literal, Sequence

import cv2
import numpy as np

from imnkit.errors import UsageError
from imnkit.face.align import umeyama, apply_affine
from imnkit.face.detect import Box, Face, check_image, fit_landmarks, make_face, predictor_box
from imnkit.face.expression import Expression, measure
from imnkit.face.filters import SWAP_BLUR, gaussian_blur, masked_blur
from imnkit.face.identities import Identity, assign_identities, get_identity, identity_names, load_pool, skin_tone
from imnkit.face.descriptors import descriptor_distance, face_descriptor, pool_face_descriptor
from imnkit.face.detail import fine_detail, match_eye_sharpness, match_grain
from imnkit.face.looks import descriptor_salt, look_groups, read_look
from imnkit.face.mouth import MouthColours, interior
from imnkit.face.warp import delaunay, piecewise_affine


@dataclass(frozen=True)
class SwapParams:
    """Tuning of the classical swap (all lengths are fractions of the face size)."""

    feather: float = 0.05  # Gaussian sigma of the mask edge
    erode: float = 0.02  # how far inside the landmark hull the mask edge starts
    brow_lift: float = 0.06  # raise the mask's top edge above the brows (covers them)
    #: the protected brows, eyes, nose and mouth are covered fully (alpha 1) this far beyond their
    #: landmarks, inside the mask polygon: with the feather alone 20-30 % of the protected brows
    #: showed above the Mask's own ("ghost brows"; benchmarks/ghost.py). 0 turns it off.
    feature_cover: float = 0.05
    light_sigma: float = 0.3  # sigma of the low-frequency shading taken from the protected face
    color_std: bool = True  # also match the spread of each Lab channel, not only the mean
    geometry: float = 1.0  # 0: protected feature layout; 1: replacement's (expression kept)
    #: the open mouth's inside: "synthetic" (drawn teeth, tongue and cavity, shaded from the Mask),
    #: "original" (the protected face's own, warped: its teeth identify it; opt-in, logged as a
    #: warning) or "identity" (the replacement's own mouth stretched open: composites' mouths are closed)
    mouth: Literal["synthetic", "original", "identity"] = "synthetic"
    expression_passes: int = 2  # re-landmark the Mask and correct its expression this many times
    grain: bool = True  # match the photo's sharpness and grain (blur or add noise; the eyes' sharpness too)
    feature_colour: bool = True  # lips take the protected lips' colour, eyes the protected eyes' tint
    blend: Literal["feather", "poisson"] = "feather"


@dataclass(frozen=True, eq=False)
class SwapResult:
    """The Mask image and where it differs from the protected photo."""

    image: np.ndarray  # HxWx3 uint8 RGB
    region: Box | None  # (y0, x0, y1, x1), exclusive ends, of all changed pixels; None: unchanged
    face_regions: list[Box | None] = field(default_factory=list)  # per face, same convention
    identities: list[str] = field(default_factory=list)  # pool identity used for each face
    distances: list[float | None] = field(default_factory=list)  # dlib protected-vs-Mask, if checked


log = logging.getLogger(__name__)

_RING_SCALE = 1.6
#: with ``min_distance``, an identity is also passed over while the Mask's expression reads
#: this far (sum of the three measures' errors) from the protected face's: some replacements'
#: lips keep reading open over a closed mouth
MAX_EXPRESSION_ERROR = 0.08
MAX_TRIES = 8  # identities tried per face at most (each costs a rendering and a dlib check)
#: an expression reading this close (sum of the three measures' errors) needs no correction pass;
#: each pass costs a rendering (~0.3 s for a 1024^2 portrait on 2 cores)
GOOD_EXPRESSION = 0.015
#: the expression passes render a copy shrunk to a face of at most this size (px)
PASS_FACE_SIZE = 320.0
#: an identity whose shrunk draft reads this much closer than ``min_distance`` is passed over
#: without its full-size rendering. On 70 drafts of the 14 large faces of ../shared/data/faces
#: (scripts/screen_drafts.py) the draft read -0.016..+0.022 from the full-size Mask, except on a
#: face under a medical mask, read up to 0.18 closer (an identity that would have done is passed
#: over there; none is ever taken for hidden when it is not)
SCREEN_MARGIN = 0.02
#: ... and one whose draft reads this much farther than ``min_distance`` needs no full-size dlib check
CLEAR_MARGIN = 0.05
#: an identity whose draft reads at most this much closer than ``min_distance`` is drafted once more
#: with its layout pushed away from the protected face's (``geometry`` = :data:`PUSH_GEOMETRY`), and
#: the farther of the two drafts goes on: a look-matched identity that just misses (a girl's Mask
#: read 0.58 from a girl) is kept rather than one of another age band or gender presentation
PUSH_WINDOW = 0.04
PUSH_GEOMETRY = 1.3
#: ... and it goes on to its full-size rendering only when the better draft reads at least this much
#: over ``min_distance`` (a draft reads within about +-0.02 of its full-size Mask, so one just over the
#: line often fails at full size after a costly rendering: portrait_06's girl_1 read 0.602, then 0.595;
#: portrait_07's girl_2 read 0.609, then 0.611 and was kept)
PUSHED_CLEAR = 0.005
#: an identity whose own image reads closer than ``min_distance`` plus this to the protected face is
#: tried after the others of its look group: a Mask reads closer than its identity (it keeps the
#: face's expression, colour and some of its layout; median -0.08 on 62 training photos). There
#: (scripts/near_identities.py), 3 of 8 such identities' first drafts hid the face (3 more only
#: pushed, at twice the drafting), against 236 of 254 farther ones'. See :func:`_far_first`.
NEAR_IDENTITY_MARGIN = 0.06


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


_FRAME = np.r_[0:17, 27, 30, 33, 36, 39, 42, 45]  # points the replacement layout is fitted on


# Partners on the inner lip of each outer-lip point (index, inner a, inner b, weight of b):
# the lip thickness is the outer point minus its partner, taken from the replacement.
_LIP_PARTNERS = (
    (49, 60, 61, 0.5), (50, 61, 61, 0.0), (51, 62, 62, 0.0), (52, 63, 63, 0.0), (53, 63, 64, 0.5),
    (55, 64, 65, 0.5), (56, 65, 65, 0.0), (57, 66, 66, 0.0), (58, 67, 67, 0.0), (59, 67, 60, 0.5),
)
_BROW_SHIFT = 0.5  # how far the brows move onto the replacement's brow position (the rest: expression)


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine (2, 3) mapping src -> dst; it absorbs yaw/pitch foreshortening."""
    a = np.c_[src, np.ones(len(src))]
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T


def _partner(lm: np.ndarray, a: int, b: int, t: float) -> np.ndarray:
    return (1.0 - t) * lm[a] + t * lm[b]


def _target_landmarks(protected: np.ndarray, replacement: np.ndarray, geometry: float) -> np.ndarray:
    """The Mask's landmarks: the replacement's layout wearing the protected face's expression.

    The replacement's landmarks are first mapped onto the protected face by an affine fitted
    on the jaw line and the eye/nose anchors (so pose foreshortening is matched, not undone).
    Identity (from the replacement): eye positions and spacing, nose, where the mouth sits,
    lip thickness, half of the brow position. Expression (from the protected face): the shape
    of each eye (its opening), the inner lips (mouth opening), the mouth width relative to the
    eye-corner distance (smile), the brows' height and tilt over their eye. The jaw line stays
    the protected one (the mask's outline). ``geometry`` in [0, 1] goes from the protected
    landmarks (0) to this target (1).
    """
    prot = protected.astype(np.float64)
    out = prot.copy()
    if geometry == 0.0:
        return out
    rep = apply_affine(_fit_affine(replacement[_FRAME], prot[_FRAME]), replacement.astype(np.float64))
    out[27:36] = rep[27:36]  # nose
    for eye, brow, (c0, c1) in ((np.r_[36:42], np.r_[17:22], (36, 39)), (np.r_[42:48], np.r_[22:27], (42, 45))):
        m = umeyama(prot[[c0, c1]], rep[[c0, c1]])  # the protected eye, its shape kept, on the replacement's corners
        out[eye] = apply_affine(m, prot[eye])
        b = apply_affine(m, prot[brow])  # the brow keeps its height and tilt over its eye
        out[brow] = b + _BROW_SHIFT * (rep[brow].mean(axis=0) - b.mean(axis=0))
    # Mouth: the protected mouth scaled/turned with the eye line (so width / eye distance and
    # the inner-lip opening stay), centred on the replacement's mouth-corner midpoint.
    m = umeyama(prot[[36, 45]], out[[36, 45]])
    mouth = apply_affine(m, prot[48:68])
    mouth += (rep[48] + rep[54]) / 2 - (mouth[0] + mouth[6]) / 2
    out[48:68] = mouth
    for o, a, b, t in _LIP_PARTNERS:  # lip thickness from the replacement
        out[o] = _partner(out, a, b, t) + (rep[o] - _partner(rep, a, b, t))
    return prot + geometry * (out - prot)


def _axes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vector from a to b and its normal (pointing down the face for a left-to-right line)."""
    u = (b - a) / max(float(np.linalg.norm(b - a)), 1e-9)
    return u, np.array([-u[1], u[0]])


def _open_by(lm: np.ndarray, upper: list[int], lower: list[int], c0: int, c1: int, delta: float) -> None:
    """Widen (delta > 0) or narrow the gap between two lids/lips by ``delta`` pixels, in place.

    Upper points move up and lower points down by half of it each, normal to the corner line;
    the gap never closes past zero.
    """
    _, n = _axes(lm[c0], lm[c1])
    gap = float(np.mean((lm[lower] - lm[upper]) @ n))
    delta = max(delta, -max(gap, 0.0))
    lm[upper] -= 0.5 * delta * n
    lm[lower] += 0.5 * delta * n


def _correct_expression(target: np.ndarray, want: Expression, got: Expression) -> np.ndarray:
    """Target landmarks moved so that the rendered Mask reads ``want`` where it read ``got``."""
    t = target.copy()
    # Mouth width: the mouth scaled along its corner line about its centre.
    u, _ = _axes(t[48], t[54])
    c = t[48:68].mean(axis=0)
    k = 1.0 + (want.smile_width - got.smile_width) / max(got.smile_width, 1e-3)
    along = (t[48:68] - c) @ u
    t[48:68] += np.outer((float(np.clip(k, 0.8, 1.25)) - 1.0) * along, u)
    # Mouth opening: the inner lips (the outer ones follow, keeping the lip thickness).
    inner_w = float(np.linalg.norm(t[64] - t[60]))
    before = t[[49, 50, 51, 52, 53, 55, 56, 57, 58, 59]] - t[[61, 61, 62, 63, 63, 65, 65, 66, 67, 67]]
    _open_by(t, [61, 62, 63], [67, 66, 65], 60, 64, (want.mouth_open - got.mouth_open) * inner_w)
    t[[49, 50, 51, 52, 53, 55, 56, 57, 58, 59]] = t[[61, 61, 62, 63, 63, 65, 65, 66, 67, 67]] + before
    # Eye opening: both eyes' lids.
    for up, lo, c0, c1 in (([37, 38], [41, 40], 36, 39), ([43, 44], [47, 46], 42, 45)):
        eye_w = float(np.linalg.norm(t[c1] - t[c0]))
        _open_by(t, up, lo, c0, c1, (want.eye_open - got.eye_open) * eye_w)
    return t


def _grey_pixels(img: np.ndarray) -> bool:
    """True when no pixel's channels differ by more than 2 levels (a black-and-white photo)."""
    r, g, b = cv2.split(img)
    return max(int(cv2.absdiff(r, g).max()), int(cv2.absdiff(g, b).max()), int(cv2.absdiff(r, b).max())) <= 2


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


def _mouth_inside(image: np.ndarray, prot: np.ndarray, target: np.ndarray, box: Box,
                  size: float) -> tuple[np.ndarray, np.ndarray]:
    """The protected mouth's inside warped onto the target inner lips, and its soft mask (box-sized)."""
    y0, x0, y1, x1 = box
    c_p, c_t = prot[48:68].mean(axis=0), target[48:68].mean(axis=0)
    src = np.vstack([prot[48:68], c_p + 1.6 * (prot[48:60] - c_p)])
    dst = np.vstack([target[48:68], c_t + 1.6 * (target[48:60] - c_t)])
    tri = _triangles("mouth", np.ascontiguousarray(src).tobytes())
    inside = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    m = np.zeros((y1 - y0, x1 - x0), np.float32)
    # Only the mouth's own box is warped (the face box is several times larger).
    lo = np.floor(dst.min(axis=0)).astype(int) - 2
    hi = np.ceil(dst.max(axis=0)).astype(int) + 3
    mx0, my0 = max(x0, lo[0]), max(y0, lo[1])
    mx1, my1 = min(x1, hi[0]), min(y1, hi[1])
    if mx1 - mx0 < 2 or my1 - my0 < 2:
        return inside, m
    part, covered = piecewise_affine(image, src, dst, tri, (my0, mx0, my1, mx1), interpolation=cv2.INTER_LINEAR)
    # The inner-lip polygon grown by 1.5 % of the face: an open mouth's inside with its lip
    # edges, a closed mouth's lip line (a composite's averaged lips read as slightly open).
    pm = _poly_mask(part.shape[:2], target[60:68] - [mx0, my0])
    pm = 1 - _erode(1 - pm, 0.015 * size)
    pm = cv2.GaussianBlur(pm.astype(np.float32), (0, 0), max(0.5, 0.01 * size)) * covered
    inside[my0 - y0:my1 - y0, mx0 - x0:mx1 - x0] = part
    m[my0 - y0:my1 - y0, mx0 - x0:mx1 - x0] = pm
    return inside, m


def _synthetic_mouth(w_rgb: np.ndarray, target: np.ndarray, box: Box, size: float, grey: bool,
                     skin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The drawn mouth inside (:func:`imnkit.face.mouth.interior`) on the target inner lips, and its
    soft mask (box-sized), shaded from the Mask's own skin and lips in ``w_rgb`` (box-sized)."""
    y0, x0, y1, x1 = box
    local = target - [x0, y0]
    inside = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    m = np.zeros((y1 - y0, x1 - x0), np.float32)
    # Only the mouth's own box is drawn (the face box is several times larger).
    lo = np.floor(local[48:68].min(axis=0)).astype(int) - 2
    hi = np.ceil(local[48:68].max(axis=0)).astype(int) + 3
    mx0, my0 = max(0, lo[0]), max(0, lo[1])
    mx1, my1 = min(x1 - x0, hi[0]), min(y1 - y0, hi[1])
    if mx1 - mx0 < 2 or my1 - my0 < 2:
        return inside, m
    mouth_rgb = np.ascontiguousarray(w_rgb[my0:my1, mx0:mx1])
    lips = _ring_mask(mouth_rgb.shape[:2], local[48:60] - [mx0, my0], local[60:68] - [mx0, my0])
    if cv2.countNonZero(lips) < 8 or cv2.countNonZero(skin) < 8:
        return inside, m
    # The skin's mean colour in Lab (of its mean RGB: converting the whole face box costs more).
    skin_rgb = np.array([[cv2.mean(w_rgb, mask=skin)[:3]]], np.float32) / 255.0
    skin_lab = cv2.cvtColor(skin_rgb, cv2.COLOR_RGB2LAB)[0, 0] * [255.0 / 100.0, 1.0, 1.0] + [0.0, 128.0, 128.0]
    lab = cv2.cvtColor(mouth_rgb, cv2.COLOR_RGB2LAB)
    lip_lab = cv2.mean(lab, mask=lips)[:3]
    # The light across the mouth: the lips' lightness fitted linearly along the corner line.
    ys, xs = np.nonzero(lips)
    axis = local[64] - local[60]
    u = ((np.c_[xs + mx0, ys + my0] - local[60]) @ axis) / max(float(axis @ axis), 1e-6)
    l_vals = lab[ys, xs, 0].astype(np.float64)
    slope = float(np.polyfit(u, l_vals, 1)[0] / max(l_vals.mean(), 1.0)) if np.ptp(u) > 0.2 else 0.0
    colours = MouthColours(skin_l=float(skin_lab[0]), lips=lip_lab, skin_ab=(float(skin_lab[1]), float(skin_lab[2])),
                           light_slope=slope, grain=0.8 * fine_detail(mouth_rgb, lips), grey=grey)
    part, alpha = interior(target[60:68], (y0 + my0, x0 + mx0, y0 + my1, x0 + mx1), size, colours,
                           seed=x0 * 7919 + y0)
    inside[my0:my1, mx0:mx1] = part
    m[my0:my1, mx0:mx1] = alpha
    return inside, m


def swap_face(
    image: np.ndarray,
    face: Face,
    identity: Identity,
    params: SwapParams = SwapParams(),
) -> tuple[np.ndarray, Box | None]:
    """Put ``identity`` over one face; returns (new image, box of changed pixels or None).

    With ``params.expression_passes`` > 0 the Mask is re-landmarked after rendering and the
    target's mouth opening, mouth width and eye opening are corrected by what the landmark
    model reads off the rendered Mask versus off the protected face (the replacement's lips and
    lids pull the reading towards its own expression), then rendered again; the target that
    reads closest to the protected expression is rendered. The passes render a copy of the
    photo shrunk to a face of at most ``PASS_FACE_SIZE`` px (the measures are ratios, and the
    landmark model needs no more), so a large face costs one full-size rendering, not three.
    """
    image = check_image(image)
    draft = _draft(image, face, identity, params)
    return draft.rendered if draft.final else _full_size(image, face, identity, draft.target, params)


@dataclass(frozen=True, eq=False)
class _Draft:
    """A face's swap before its full-size rendering: the target landmarks the passes chose, and their
    rendering (of the photo shrunk by ``scale``; ``final`` when that is the full-size result)."""

    target: np.ndarray
    rendered: tuple[np.ndarray, Box | None]
    scale: float
    final: bool


def _draft(image: np.ndarray, face: Face, identity: Identity, params: SwapParams) -> _Draft:
    """The expression passes of :func:`swap_face` (on a shrunk copy when the face is large)."""
    prot = np.asarray(face.landmarks, dtype=np.float64)
    target = _target_landmarks(prot, np.asarray(identity.landmarks, dtype=np.float64), params.geometry)
    if params.geometry == 0 or params.expression_passes <= 0:
        return _Draft(target, _render(image, prot, identity, target, params), 1.0, True)
    s = min(1.0, PASS_FACE_SIZE / max(_face_size(prot), 1.0))
    target, rendered = _expression_passes(image, predictor_box(face), prot, identity, target, params, scale=s)
    return _Draft(target, rendered, s, s >= 1.0)  # a small face: the passes' renderings are full-size


def _full_size(image: np.ndarray, face: Face, identity: Identity, target: np.ndarray,
               params: SwapParams) -> tuple[np.ndarray, Box | None]:
    """``target`` rendered at full size, and once corrected when the full-size Mask reads off."""
    prot = np.asarray(face.landmarks, dtype=np.float64)
    out, box = _render(image, prot, identity, target, params)
    if box is None:
        return out, box
    # The full-size Mask can read a little differently from the shrunk one: one correction at full
    # size when it is off, the better of the two kept (a landmark fit costs ~4 ms, a rendering ~0.3 s).
    want = measure(prot)
    got = measure(fit_landmarks(out, predictor_box(face)))
    err = _expression_error(want, got)
    if err <= GOOD_EXPRESSION:
        return out, box
    again, again_box = _render(image, prot, identity, _correct_expression(target, want, got), params)
    if again_box is not None and _expression_error(want, measure(fit_landmarks(again, predictor_box(face)))) < err:
        return again, again_box
    return out, box


def _expression_error(want: Expression, got: Expression) -> float:
    """Sum of the three measures' absolute errors (mouth opening, smile width, eye opening)."""
    return (abs(got.mouth_open - want.mouth_open) + abs(got.smile_width - want.smile_width)
            + abs(got.eye_open - want.eye_open))


def _expression_passes(image: np.ndarray, box: Box, prot: np.ndarray, identity: Identity, target: np.ndarray,
                       params: SwapParams, scale: float) -> tuple[np.ndarray, tuple[np.ndarray, Box | None]]:
    """(target, its rendering at ``scale``) of the pass whose Mask reads closest to the protected expression.

    Points map to the ``scale``-shrunk photo as ``(p + 0.5) * scale - 0.5`` (pixel centres at integers).
    """
    small = image if scale == 1.0 else cv2.resize(image, (max(8, round(image.shape[1] * scale)),
                                                           max(8, round(image.shape[0] * scale))),
                                                  interpolation=cv2.INTER_AREA)
    to_small = lambda p: (p + 0.5) * scale - 0.5  # noqa: E731
    small_box = _scaled_box(box, scale)
    want = measure(prot)
    best = None
    for k in range(params.expression_passes + 1):
        rendered = _render(small, to_small(prot), identity, to_small(target), params)
        if rendered[1] is None:
            break
        got = measure(fit_landmarks(rendered[0], small_box))
        err = _expression_error(want, got)
        if best is None or err < best[0]:
            best = (err, target, rendered)
        if k == params.expression_passes or err <= GOOD_EXPRESSION:
            break
        target = _correct_expression(target, want, got)
    if best is None:  # nothing rendered: as without passes
        return target, _render(image, prot, identity, target, params) if scale == 1.0 else (image.copy(), None)
    return best[1], best[2]


def _render(image: np.ndarray, prot: np.ndarray, identity: Identity, target: np.ndarray,
            params: SwapParams) -> tuple[np.ndarray, Box | None]:
    """Warp, colour-match and blend ``identity`` onto the ``target`` landmarks of a face at ``prot``."""
    size = _face_size(prot)
    geo = _render_geometry(image.shape[:2], prot, identity, target, params.brow_lift * size)
    if geo is None:
        return image.copy(), None
    mask_pts, dst_pts, box = geo
    warped, covered = _warp_replacement(identity, target, dst_pts, box)
    y0, x0, y1, x1 = box
    roi = image[y0:y1, x0:x1]
    if params.grain:  # the eyes as sharp as the protected eyes, before the grain (else it is sharpened too)
        warped = match_eye_sharpness(roi, warped, prot - [x0, y0], target - [x0, y0], size)
    hull = _poly_mask(roi.shape[:2], mask_pts - [x0, y0])
    inner = _erode(hull, params.erode * size)
    # Keep the feathered edge (~3 sigma) inside the warped area, so alpha never meets its edge.
    inner &= _erode(covered.astype(np.uint8), 3 * params.feather * size)
    if inner.sum() < 16:
        return image.copy(), None
    skin = _skin_mask(inner, prot - [x0, y0], dst_pts - [x0, y0])
    grey = _grey_pixels(roi)
    w_rgb = _match_colour(roi, warped, skin, params, size, seed=x0 * 7919 + y0, grey=grey)
    if params.feature_colour and not grey:
        w_rgb = _match_features(roi, w_rgb, prot - [x0, y0], target - [x0, y0], size)
    out_roi, alpha = _blend(image, w_rgb, inner, covered, box, params, size)
    if params.feature_cover > 0:
        alpha = np.maximum(alpha, _feature_cover(hull, prot - [x0, y0], params, size) * covered)
    if params.mouth != "identity":
        # An open mouth shows teeth, tongue and a dark throat on the Mask's inner lips, a closed one
        # its lip line, rather than the replacement's closed lips stretched open. Drawn by default:
        # the protected mouth's own inside (mouth="original") shows its teeth, which identify people.
        if params.mouth == "original":
            inside, m_alpha = _mouth_inside(image, prot, target, box, size)
        else:
            inside, m_alpha = _synthetic_mouth(w_rgb, target, box, size, grey, skin)
        out_roi = out_roi.astype(np.float32)
        out_roi += m_alpha[..., None] * (inside.astype(np.float32) - out_roi)
        alpha = np.maximum(alpha, m_alpha * covered)
    alpha[alpha < 1.0 / 512] = 0.0
    return _composite(image, roi, out_roi, alpha, box)


def _render_geometry(shape: tuple[int, int], prot: np.ndarray, identity: Identity, target: np.ndarray,
                     lift: float) -> tuple[np.ndarray, np.ndarray, Box] | None:
    """Mask polygon, warp destination points and the photo box they cover (None: too small)."""
    h, w = shape
    # Mask polygon: jaw line plus the brows lifted a little (so the brows are swapped too).
    top = np.where((target[17:27, 1] < prot[17:27, 1])[:, None], target[17:27], prot[17:27])
    top[:, 1] -= lift
    # The protected brows (lifted) too: a replacement's narrower brows left their tails outside.
    mask_pts = np.vstack([target[:17], top, prot[17:27] - [0.0, lift]])
    dst_pts = np.vstack([target, _ring(target)])
    lo = np.floor(np.minimum(dst_pts.min(axis=0), mask_pts.min(axis=0))) - 2
    hi = np.ceil(np.maximum(dst_pts.max(axis=0), mask_pts.max(axis=0))) + 3
    x0, y0 = max(0, int(lo[0])), max(0, int(lo[1]))
    x1, y1 = min(w, int(hi[0])), min(h, int(hi[1]))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return mask_pts, dst_pts, (y0, x0, y1, x1)


def _warp_replacement(identity: Identity, target: np.ndarray, dst_pts: np.ndarray,
                      box: Box) -> tuple[np.ndarray, np.ndarray]:
    """The replacement face warped onto ``dst_pts`` inside ``box``, and where the warp lands."""
    rep = np.asarray(identity.landmarks, dtype=np.float64)
    src_pts = np.vstack([rep, _ring(rep)])
    # Pre-shrink the replacement when the face is much smaller, so the remap does not alias.
    src = identity.image
    scale = float(np.sqrt(abs(np.linalg.det(umeyama(rep, target)[:, :2]))))
    if scale < 0.8:
        src = cv2.resize(src, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        src_pts = src_pts * scale
    tri = _triangles(identity.name, np.ascontiguousarray(np.vstack([rep, _ring(rep)])).tobytes())
    return piecewise_affine(src, src_pts, dst_pts, tri, box, interpolation=cv2.INTER_LINEAR)


def _skin_mask(inner: np.ndarray, prot_local: np.ndarray, target_local: np.ndarray) -> np.ndarray:
    """``inner`` minus brows, eyes and mouth of both layouts (box coordinates); ``inner`` if too little is left.

    Colour statistics come from skin only: features differ in darkness between people, and
    matching them would shift the skin tone.
    """
    skin = inner.copy()
    feat_pts = [np.r_[17:22, 36:42], np.r_[22:27, 42:48], np.r_[48:60]]
    for pts in (prot_local, target_local):
        for idx in feat_pts:
            cv2.fillConvexPoly(skin, cv2.convexHull(np.round(pts[idx] * 16).astype(np.int32)), 0,
                               lineType=cv2.LINE_8, shift=4)
    if skin.sum() < 0.2 * inner.sum():
        skin = inner
    return skin


def _match_colour(roi: np.ndarray, warped: np.ndarray, skin: np.ndarray, params: SwapParams,
                  size: float, seed: int, grey: bool) -> np.ndarray:
    """The warped replacement given the photo's skin colour, shading and grain (grey if ``grey``,
    the photo's box being grey)."""
    # Lightness as log(L* + 16) (log luminance / 3): shading and a feature's darkness multiply
    # there, so a composite's dark lashes stay dark, not black, on dark skin.
    p_lab, w_lab = (_log_lightness(cv2.cvtColor(x, cv2.COLOR_RGB2LAB)) for x in (roi, warped))
    sel8 = skin.astype(np.uint8)
    # cv2.meanStdDev over the mask: the same statistics as numpy over p_lab[sel], ~40x faster
    (mu_p, sd_p), (mu_w, sd_w) = (cv2.meanStdDev(lab, mask=sel8) for lab in (p_lab, w_lab))
    mu_p, sd_p, mu_w, sd_w = (v.ravel().astype(np.float32) for v in (mu_p, sd_p, mu_w, sd_w))
    if params.color_std:
        ratio = np.clip(sd_p / np.maximum(sd_w, 1e-3), [0.67, 0.1, 0.1], [1.0, 1.5, 1.5]).astype(np.float32)
    else:
        ratio = np.ones(3, np.float32)
    w_lab = (w_lab - mu_w) * ratio + mu_p
    if params.light_sigma > 0:
        sig = params.light_sigma * size
        w_lab += masked_blur(p_lab, skin, sig) - masked_blur(w_lab, skin, sig)
    w_lab[..., 0] = (np.exp(w_lab[..., 0]) - 16.0) * (255.0 / 100.0)
    w_rgb = cv2.cvtColor(np.clip(np.rint(w_lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    if params.grain:
        w_rgb = match_grain(w_rgb, roi, sel8, seed=seed)
    if grey:  # a grey photo stays grey
        grey = np.rint(w_rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
        w_rgb = np.repeat(grey, 3, axis=2)
    return w_rgb


def _log_lightness(lab8: np.ndarray) -> np.ndarray:
    """8-bit Lab as float32 with L replaced by log(L* + 16)."""
    out = lab8.astype(np.float32)
    out[..., 0] = np.log(out[..., 0] * (100.0 / 255.0) + 16.0)
    return out


#: (outer polygon, its growth about its centre, inner polygon or None, Lab channels matched, share of
#: the replacement's own tint kept): lips whole; eyes with their lids and lashes in tint only (an
#: eye's lightness mixes its white, iris and lashes, which differ in share between two people), their
#: tint the photo's (a composite's irises and lashes are bluish)
_FEATURE_COLOUR = ((np.r_[48:60], 1.0, np.r_[60:68], slice(0, 3), 1.0),
                   (np.r_[36:42], 1.8, None, slice(1, 3), 0.0), (np.r_[42:48], 1.8, None, slice(1, 3), 0.0))


def _match_features(roi: np.ndarray, w_rgb: np.ndarray, prot_local: np.ndarray, target_local: np.ndarray,
                    size: float) -> np.ndarray:
    """``w_rgb`` with each feature's mean colour moved to the protected face's (box coordinates).

    The skin match leaves a composite's features as they were relative to its skin: red lips
    and bluish eyes of light-skinned contributors stay so on any face; the photo's own lip
    colour and eye tint are what its light and the person's look give.
    """
    sigma = max(0.5, 0.01 * size)
    h, w = roi.shape[:2]
    out = w_rgb.copy()
    for outer, grow, inner, chans, keep in _FEATURE_COLOUR:
        polys = [(_grown(lm[outer], grow), None if inner is None else lm[inner]) for lm in (prot_local, target_local)]
        # Each feature on its own box (both layouts, plus the feather): a face box is ~30x larger.
        pts = np.vstack([polys[0][0], polys[1][0]])
        x0, y0 = np.maximum(np.floor(pts.min(axis=0) - 3 * sigma - 1).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(pts.max(axis=0) + 3 * sigma + 2).astype(int), [w, h])
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        shape, off = (y1 - y0, x1 - x0), np.array([x0, y0], np.float64)
        p_sel, w_sel = (_ring_mask(shape, o - off, None if i is None else i - off) for o, i in polys)
        if cv2.countNonZero(p_sel) < 16 or cv2.countNonZero(w_sel) < 16:
            continue
        p_lab = cv2.cvtColor(roi[y0:y1, x0:x1], cv2.COLOR_RGB2LAB).astype(np.float32)
        w_lab = cv2.cvtColor(out[y0:y1, x0:x1], cv2.COLOR_RGB2LAB).astype(np.float32)
        mu_p, mu_w = (np.asarray(cv2.mean(lab, mask=m)[:3], np.float32) for lab, m in ((p_lab, p_sel), (w_lab, w_sel)))
        want = w_lab.copy()
        want[..., chans] = (mu_p + keep * (w_lab - mu_w))[..., chans]
        soft = gaussian_blur(w_sel.astype(np.float32), sigma, **SWAP_BLUR)[..., None]
        w_lab += soft * (want - w_lab)
        out[y0:y1, x0:x1] = cv2.cvtColor(np.clip(np.rint(w_lab), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return out


def _feature_cover(hull: np.ndarray, prot_local: np.ndarray, params: SwapParams, size: float) -> np.ndarray:
    """Soft 0..1 map, 1 over the protected brows-to-mouth hull grown by ``feature_cover`` x ``size``
    (box coordinates), kept inside the mask polygon ``hull`` (0/1 uint8)."""
    sigma = max(0.5, params.feather * size / 4)
    # Grown by the margin plus two sigmas, so the blur still gives ~0.98 at the margin.
    grown = 1 - _erode(1 - _poly_mask(hull.shape, prot_local[17:68]), params.feature_cover * size + 2 * sigma)
    # Clipped: a blurred 1 can read 1 + 1e-7, which lets the photo in with a negative weight.
    return np.minimum(gaussian_blur((grown & hull).astype(np.float32), sigma, **SWAP_BLUR), 1.0)


def _grown(pts: np.ndarray, k: float) -> np.ndarray:
    c = pts.mean(axis=0)
    return c + k * (pts - c)


def _ring_mask(shape: tuple[int, int], outer: np.ndarray, inner: np.ndarray | None) -> np.ndarray:
    """0/1 uint8 mask of the polygon ``outer`` minus the polygon ``inner``."""
    m = _poly_mask(shape, outer)
    if inner is not None:
        m &= 1 - _poly_mask(shape, inner)
    return m


def _blend(image: np.ndarray, w_rgb: np.ndarray, inner: np.ndarray, covered: np.ndarray, box: Box,
           params: SwapParams, size: float) -> tuple[np.ndarray, np.ndarray]:
    """What goes over the box and its alpha: feathered ``w_rgb``, or the Poisson-cloned photo."""
    y0, x0, y1, x1 = box
    if params.blend != "poisson":
        alpha = gaussian_blur(inner.astype(np.float32), max(0.5, params.feather * size), **SWAP_BLUR)
        alpha *= covered
        return w_rgb, alpha
    h, w = image.shape[:2]
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
    return cloned[y0:y1, x0:x1], inner.astype(np.float32)


def _composite(image: np.ndarray, roi: np.ndarray, out_roi: np.ndarray, alpha: np.ndarray,
               box: Box) -> tuple[np.ndarray, Box | None]:
    """``out_roi`` alpha-blended over the box of ``image``; the new image and the box of changed pixels."""
    y0, x0, y1, x1 = box
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


@functools.lru_cache(maxsize=4)
def _pool_descriptors(pool: str | None) -> dict[str, np.ndarray]:
    """dlib descriptors of the pool identities (for ``assign="similar"``): stored, else computed."""
    return {i.name: i.descriptor if i.descriptor is not None else pool_face_descriptor(i.image, i.landmarks)
            for i in load_pool(pool)}


def _is_grey(image: np.ndarray, face: Face) -> bool:
    """True when the face's box holds no colour (a black-and-white photo)."""
    y0, x0, y1, x1 = face.box
    roi = np.ascontiguousarray(image[max(0, y0):y1, max(0, x0):x1])
    return roi.size == 0 or _grey_pixels(roi)


def swap_faces(
    image: np.ndarray,
    faces: Sequence[Face],
    *,
    seed: int = 0,
    replace: str | Sequence[str] | None = None,
    params: SwapParams = SwapParams(),
    min_distance: float | None = 0.6,
    assign: Literal["look", "seeded", "similar"] = "look",
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
            than this to the protected face or its expression reads more than
            ``MAX_EXPRESSION_ERROR`` off, try the pool's next identities (unused ones first, up
            to ``MAX_TRIES``; in each look group, those whose stored descriptor reads within
            ``NEAR_IDENTITY_MARGIN`` of this last), keeping the first that passes, else the best
            (far enough first, then the best-kept expression). None: no check.
        assign: ``"look"`` (default) gives each face an identity of its apparent look (gender
            presentation, age band, skin tone; :mod:`imnkit.face.looks`), the seed and the face
            choosing among the close matches; ``"seeded"`` deals a seeded permutation of the pool; ``"similar"`` gives each
            face the unused identity whose dlib descriptor is nearest its own (similar
            gender/age look, so the Mask looks more natural), the seed breaking ties, and
            relies on ``min_distance`` to keep it a different person.
        pool: folder of another identity pool (default: the built-in one).

    Returns:
        :class:`SwapResult`; outside ``region`` the image equals the input bit for bit.
    """
    image = check_image(image)
    faces = list(faces)
    if assign not in ("look", "seeded", "similar"):
        raise UsageError(f"assign must be 'look', 'seeded' or 'similar', got {assign!r}")
    if params.mouth not in ("synthetic", "original", "identity"):
        raise UsageError(f"mouth must be 'synthetic', 'original' or 'identity', got {params.mouth!r}")
    if params.mouth == "original" and faces:
        log.warning("swap: mouth='original' copies each protected face's open-mouth inside (its teeth) "
                    "into the Mask; teeth can identify a person")
    names = _first_identities(len(faces), seed, replace, pool)
    pool_names = identity_names(pool)
    order = assign_identities(len(pool_names), seed, pool_names)  # the seeded permutation

    out = image
    regions: list[Box | None] = []
    used: list[str] = []
    distances: list[float | None] = []
    for face, first in zip(faces, names):
        prot_desc = None
        if replace is not None:
            tries = [first]
        else:
            groups, prot_desc = _candidates(image, face, first, order, assign, seed, pool)
            # Unused identities first, so faces of one photo differ while the pool lasts.
            tries = sorted((n for g in groups for n in g), key=lambda n: n in used)
        if min_distance is None:
            name = tries[0]
            out, reg = swap_face(out, face, get_identity(name, pool), params)
            dist: float | None = None
        else:
            if prot_desc is None:
                prot_desc = face_descriptor(image, face)
            near: set[str] = set()
            if replace is None:
                tries, near = _far_first(groups, prot_desc, used, min_distance, pool)
            dist, name, out, reg = _first_hidden(out, face, prot_desc, tries, near, params, min_distance, pool)
        regions.append(reg)
        used.append(name)
        distances.append(dist)
    if out is image:
        out = image.copy()
    return SwapResult(image=out, region=_changed_region(image, out), face_regions=regions, identities=used,
                      distances=distances)


def _first_identities(n_faces: int, seed: int, replace: str | Sequence[str] | None,
                      pool: str | None) -> list[str]:
    """Each face's first identity: the seeded deal, or ``replace``; every name checked against the pool."""
    if replace is None:
        names = assign_identities(n_faces, seed, identity_names(pool))
    elif isinstance(replace, str):
        names = [replace] * n_faces
    else:
        names = list(replace)
        if len(names) != n_faces:
            raise UsageError(f"replace lists {len(names)} identities for {n_faces} faces")
    for n in names:
        get_identity(n, pool)  # fail early, naming the valid identities
    return names


def _candidates(image: np.ndarray, face: Face, first: str, order: list[str], assign: str, seed: int,
                pool: str | None) -> tuple[list[list[str]], np.ndarray | None]:
    """The pool identities to try for ``face``, best first, in groups of about equal merit (the
    good look matches, the rest), and its dlib descriptor if it was measured."""
    if assign == "look":
        prot_desc = face_descriptor(image, face)
        tone = float("nan") if _is_grey(image, face) else skin_tone(image, face.landmarks)
        look = read_look(image, face, tone, pool, descriptor=prot_desc)
        return list(look_groups(look, load_pool(pool), seed, descriptor_salt(prot_desc))), prot_desc
    if assign == "similar":
        prot_desc = face_descriptor(image, face)
        pool_desc = _pool_descriptors(pool)
        rank = {n: i for i, n in enumerate(order)}
        # (distance, rank) is unique per identity, so sorting the permutation sorts the pool.
        return [sorted(order, key=lambda n: (descriptor_distance(prot_desc, pool_desc[n]), rank[n]))], prot_desc
    return [order[order.index(first):] + order[: order.index(first)]], None


def _far_first(groups: list[list[str]], prot_desc: np.ndarray, used: list[str], min_distance: float,
               pool: str | None) -> tuple[list[str], set[str]]:
    """The identities to try, in order, and those whose own image reads near the protected face
    (:data:`NEAR_IDENTITY_MARGIN`).

    Unused ones first, then by group, and in a group the near ones last, the order kept
    otherwise: a near identity of a good look still comes before any of a worse look. Only
    stored descriptors count (computing one costs what a draft's check does).
    """
    stored = {i.name: i.descriptor for i in load_pool(pool) if i.descriptor is not None}
    near = {n for n, d in stored.items() if descriptor_distance(prot_desc, d) < min_distance + NEAR_IDENTITY_MARGIN}
    tier = {n: k for k, g in enumerate(groups) for n in g}
    return sorted(tier, key=lambda n: (n in used, tier[n], n in near)), near


def _first_hidden(image: np.ndarray, face: Face, prot_desc: np.ndarray, tries: list[str], near_ones: set[str],
                  params: SwapParams, min_distance: float,
                  pool: str | None) -> tuple[float, str, np.ndarray, Box | None]:
    """Swap ``face`` with each of ``tries`` (at most ``MAX_TRIES``) until one hides it and keeps its expression.

    Returns (dlib distance, identity, image, changed box) of the first that passes, else of the
    best: far enough first, then the best-kept expression. A large face is first checked on its
    shrunk draft: an identity that reads clearly too close (:data:`SCREEN_MARGIN`) is passed over
    before its full-size rendering, one that reads clearly far (:data:`CLEAR_MARGIN`) needs no
    second dlib check. One in ``near_ones`` (its own image reads near the face) is drafted with
    its layout pushed (:data:`PUSH_GEOMETRY`) at once: its first draft mostly reads too close.
    """
    best = None
    want = measure(face.landmarks)
    push = dataclasses.replace(params, geometry=PUSH_GEOMETRY * params.geometry)
    for cand_name in tries[:MAX_TRIES]:
        identity = get_identity(cand_name, pool)
        pushed = cand_name in near_ones and params.geometry > 0
        draft = _draft(image, face, identity, push if pushed else params)
        near = None if draft.final else _draft_distance(draft, face, prot_desc)
        in_window = near is not None and min_distance - PUSH_WINDOW <= near < min_distance
        if in_window and not pushed and params.geometry > 0:
            pushed = True
            draft, near = _pushed(image, face, identity, push, prot_desc, draft, near)
        if near is not None and near < min_distance + (PUSHED_CLEAR if pushed else -SCREEN_MARGIN):
            if best is None or (False, False, near) > best[0]:
                best = ((False, False, near), near, cand_name, draft, None)
            continue
        cand, cand_reg = draft.rendered if draft.final else _full_size(image, face, identity, draft.target, params)
        again = make_face(fit_landmarks(cand, predictor_box(face)), face.box)
        if near is not None and near >= min_distance + CLEAR_MARGIN:
            cand_dist = near  # clearly far: the full-size Mask reads within a few hundredths of its draft
        else:
            cand_dist = descriptor_distance(prot_desc, face_descriptor(cand, again))
        err = _expression_error(want, measure(again.landmarks))
        # Hidden first; among those, the expression kept best.
        key = (cand_dist >= min_distance, err <= MAX_EXPRESSION_ERROR, -err if cand_dist >= min_distance else cand_dist)
        if best is None or key > best[0]:
            best = (key, cand_dist, cand_name, cand, cand_reg)
        if cand_dist >= min_distance and err <= MAX_EXPRESSION_ERROR:
            break
    _, dist, name, cand, cand_reg = best
    if isinstance(cand, _Draft):  # every identity read too close: the closest-to-hidden one, full size
        cand, cand_reg = _full_size(image, face, get_identity(name, pool), cand.target, params)
        dist = descriptor_distance(prot_desc, face_descriptor(cand, make_face(fit_landmarks(cand, predictor_box(face)),
                                                                              face.box)))
    return dist, name, cand, cand_reg


def _pushed(image: np.ndarray, face: Face, identity: Identity, push: SwapParams, prot_desc: np.ndarray,
            draft: _Draft, near: float) -> tuple[_Draft, float]:
    """The farther of ``draft`` (reading ``near``) and the draft made with ``push`` (the layout pushed)."""
    pushed = _draft(image, face, identity, push)
    far = _draft_distance(pushed, face, prot_desc)
    return (pushed, far) if far is not None and far > near else (draft, near)


def _draft_distance(draft: _Draft, face: Face, prot_desc: np.ndarray) -> float | None:
    """dlib distance between the protected face and its shrunk draft Mask (None: nothing rendered)."""
    small, box = draft.rendered
    if box is None:
        return None
    s = draft.scale
    small_face = make_face(fit_landmarks(small, _scaled_box(predictor_box(face), s)), _scaled_box(face.box, s))
    return descriptor_distance(prot_desc, face_descriptor(small, small_face))


def _scaled_box(box: Box, s: float) -> Box:
    """``box`` (y0, x0, y1, x1) on the photo shrunk by ``s``, at least one pixel each way."""
    y0, x0, y1, x1 = box
    return (int(y0 * s), int(x0 * s), max(int(y0 * s) + 1, round(y1 * s)), max(int(x0 * s) + 1, round(x1 * s)))


def _changed_region(image: np.ndarray, out: np.ndarray) -> Box | None:
    """The box of all pixels where ``out`` differs from ``image`` (faces may overlap, so it is measured)."""
    diff = np.any(out != image, axis=2)
    if not diff.any():
        return None
    ys = np.nonzero(diff.any(axis=1))[0]
    xs = np.nonzero(diff.any(axis=0))[0]
    return (int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1)
