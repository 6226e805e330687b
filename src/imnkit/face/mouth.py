"""A synthesised mouth inside (teeth, tongue, dark cavity) for the Mask: no pixel of the protected mouth.

Teeth are distinctive (gaps, braces, crooked or missing teeth) and identify people, so the Mask's
open mouth is drawn, not copied: a generic set of teeth, a tongue and the dark cavity, laid out on
the Mask's inner lips (the protected face's mouth opening, so the expression stays) and shaded
from what the Mask already shows around them (its skin lightness, its lips' colour and the light
across them). Nothing inside the protected mouth is read.

Layout, in the mouth frame (``s`` along the inner-lip corner line from the mouth centre, ``t``
down across it), with lengths in units of a central incisor's width (:data:`INCISOR` x face size):

* upper teeth hang from the upper inner lip, widest in the middle, narrower and darker towards
  the corners (the darker buccal corridors), their edges rounded, with a faint line between teeth;
* lower teeth rise from the lower inner lip, shorter and narrower, behind the upper ones;
* a tongue behind the lower teeth, the dark cavity everywhere else;
* the upper lip shades the teeth just below it.

A closed mouth gets the cavity colour along its lip line only (the inner polygon grown by
:data:`LINE` x face size), as a real closed mouth's line reads darker than the lips.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: a central upper incisor's width over the face size (about 8.5 mm of a ~14 cm face)
INCISOR = 0.06
#: widths of the upper teeth from the middle outwards (central incisor = 1)
UPPER_WIDTHS = (1.0, 0.78, 0.68, 0.6, 0.55, 0.5)
#: how far each upper tooth shows below the upper inner lip at most (central incisor width = 1)
UPPER_LENGTHS = (1.35, 1.15, 1.2, 1.0, 0.9, 0.8)
LOWER_WIDTHS = (0.62, 0.62, 0.6, 0.55, 0.5, 0.5)
LOWER_LENGTH = 0.55
#: the lower teeth show only where the lips part more than this (central incisor width = 1), fully
#: from the second: in a smile the lower lip covers them
LOWER_SHOW = (1.3, 2.2)
#: width of the lips' darker inner edge drawn over the teeth (central incisor width = 1)
RIM = 0.06
#: Gaussian blur of the drawing (face size): about a pixel on a 500 px face
BLUR = 0.002
#: how far the inner-lip polygon is grown (face size), so a closed mouth keeps a dark lip line
LINE = 0.005


@dataclass(frozen=True)
class MouthColours:
    """Lab (OpenCV 8-bit) colours the interior is shaded from, all read off the Mask itself."""

    skin_l: float  # mean lightness of the Mask's skin
    lips: tuple[float, float, float]  # mean Lab of the Mask's lips
    skin_ab: tuple[float, float]  # mean a, b of the Mask's skin (the light's tint)
    light_slope: float = 0.0  # relative change of the lips' lightness per inner-mouth width, left to right
    grain: float = 0.0  # std of the fine detail to add (grey levels)
    grey: bool = False  # a black-and-white photo: the interior is grey too


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / max(e1 - e0, 1e-9), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _curve(pts: np.ndarray, c: np.ndarray, ax: np.ndarray, n: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``t`` of the polyline ``pts`` (photo x, y) at each ``s`` of the mouth frame (clamped at its ends)."""
    ps, pt = (pts - c) @ ax, (pts - c) @ n
    order = np.argsort(ps)
    return np.interp(s, ps[order], pt[order])


def _teeth(s: np.ndarray, widths: tuple[float, ...], unit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each ``s``: which tooth from the middle (len(widths) beyond the last), its width (px),
    and the distance to the tooth's nearer side (px)."""
    edges = np.concatenate([[0.0], np.cumsum(widths)]) * unit
    a = np.abs(s)
    k = np.clip(np.searchsorted(edges, a, side="right") - 1, 0, len(widths))
    w = np.asarray(widths + (widths[-1],)) [k] * unit
    lo = edges[np.minimum(k, len(widths))]
    side = np.minimum(a - lo, lo + w - a)
    return k, w, np.maximum(side, 0.0)


def interior(inner: np.ndarray, box: tuple[int, int, int, int], size: float, colours: MouthColours,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The synthesised mouth inside over ``box`` (y0, x0, y1, x1 of the photo) and its soft mask.

    Args:
        inner: (8, 2) the Mask's inner-lip landmarks (iBUG 60-67, photo x, y).
        box: the photo box to draw over (the mouth's, a little larger).
        size: the face size (px).
        colours: what the interior is shaded from (:class:`MouthColours`).
        seed: seeds the grain.

    Returns:
        (RGB float32 (h, w, 3), alpha float32 (h, w) in [0, 1]).
    """
    y0, x0, y1, x1 = box
    h, w = y1 - y0, x1 - x0
    unit = INCISOR * size
    ss = int(np.clip(np.ceil(12.0 / max(unit, 1e-6)), 1, 4))  # supersampling: small mouths anti-aliased
    ys, xs = np.mgrid[0:h * ss, 0:w * ss].astype(np.float32)
    px = np.stack([x0 + (xs + 0.5) / ss - 0.5, y0 + (ys + 0.5) / ss - 0.5], axis=-1).astype(np.float64)
    left, right = inner[0].astype(np.float64), inner[4].astype(np.float64)
    width = max(float(np.linalg.norm(right - left)), 1e-6)
    ax = (right - left) / width
    n = np.array([-ax[1], ax[0]])
    c = (left + right) / 2
    s, t = (px - c) @ ax, (px - c) @ n
    tu = _curve(inner[[0, 1, 2, 3, 4]], c, ax, n, s)
    tl = _curve(inner[[0, 7, 6, 5, 4]], c, ax, n, s)

    # Layers back to front: cavity, tongue, lower teeth, upper teeth; L as a factor of its base.
    lip_l, lip_a, lip_b = colours.lips
    cav = np.array([lip_l, lip_a, lip_b])  # the lips' colour, darker
    tongue_c = np.array([0.5 * lip_l, 128 + 0.7 * (lip_a - 128), 128 + 0.5 * (lip_b - 128)])
    teeth_l = min(250.0, 1.3 * colours.skin_l + 15.0)
    teeth_c = np.array([teeth_l, 128 + 0.12 * (colours.skin_ab[0] - 128),
                        128 + 0.3 * (colours.skin_ab[1] - 128) + 2.0])
    lab = np.broadcast_to(cav, s.shape + (3,)).copy()
    # The cavity: a closed mouth's lip line is 0.4 as light as its lips, an open mouth's throat a
    # little darker, and darker deeper in.
    lab[..., 0] *= 0.4 - 0.12 * _smoothstep(0.2 * unit, 0.8 * unit, tl - tu)
    lab[..., 0] *= 1.0 - 0.35 * _smoothstep(0.0, 0.6 * unit, t - tu)

    gap = float(_curve(inner[[0, 7, 6, 5, 4]], c, ax, n, np.zeros(1))[0]
                - _curve(inner[[0, 1, 2, 3, 4]], c, ax, n, np.zeros(1))[0])
    # Teeth and tongue only between the lips; the grown rim around them is the dark lip line.
    parted = (t >= tu) & (t <= tl)
    cavity = lab.copy()
    tongue = parted & (((s / (2.2 * unit)) ** 2 + ((t - (tl - 0.15 * unit)) / (0.9 * unit)) ** 2) < 1.0)
    lab[tongue] = tongue_c

    k, tw, side = _teeth(s, LOWER_WIDTHS, unit)
    rel = 1.0 - np.clip(side / (0.5 * tw), 0, 1)  # 0 mid-tooth, 1 at its sides
    shown = LOWER_LENGTH * unit * float(_smoothstep(LOWER_SHOW[0] * unit, LOWER_SHOW[1] * unit, np.array(gap)))
    lower = parted & (t > tl - shown + 0.12 * unit * rel ** 2) & (k < len(LOWER_WIDTHS)) & (shown > 0)
    shade = 0.85 - 0.05 * k - 0.06 * rel ** 2 - 0.1 * np.exp(-(side / (0.04 * unit)) ** 2)
    lab[lower] = teeth_c
    lab[..., 0][lower] *= shade[lower]

    k, tw, side = _teeth(s, UPPER_WIDTHS, unit)
    # A wide-open mouth (a laugh) lifts the upper lip off more of the teeth.
    length = np.asarray(UPPER_LENGTHS + (0.0,))[k] * unit * float(np.clip(gap / (2.4 * unit), 1.0, 1.4))
    edge = tu + length - 0.03 * unit * (1.0 - np.clip(side / (0.5 * tw), 0, 1)) ** 2  # rounded corners
    # Teeth that nearly reach the lower lip (a smile) end a fifth of a tooth above it, all together:
    # a varying sliver of dark between them and the lip reads as a sawtooth, an even one as a smile
    # (and the landmark model reads the opening from it).
    rest = gap - UPPER_LENGTHS[0] * unit * float(np.clip(gap / (2.4 * unit), 1.0, 1.4))
    edge = tl - 0.2 * unit + float(_smoothstep(0.2 * unit, 0.7 * unit, np.array(rest))) * (edge - tl + 0.2 * unit)
    upper = parted & (t < edge) & (k < len(UPPER_WIDTHS))
    rel = 1.0 - np.clip(side / (0.5 * tw), 0, 1)  # 0 mid-tooth, 1 at its sides
    shade = (1.0 - 0.05 * k - 0.06 * rel ** 2 - 0.07 * np.exp(-(side / (0.03 * unit)) ** 2)
             - 0.2 * np.exp(-np.maximum(t - tu, 0.0) / (0.1 * unit))  # the upper lip's shadow
             - 0.06 * _smoothstep(-0.2 * unit, 0.0, t - edge))  # the edge is translucent
    lab[upper] = teeth_c
    lab[..., 0][upper] *= shade[upper]

    # The lips' wet inner edge: a rim of their colour, darker, where they meet the teeth.
    rim = np.maximum(np.exp(-np.maximum(t - tu, 0.0) / (RIM * unit)), np.exp(-np.maximum(tl - t, 0.0) / (RIM * unit)))
    rim_c = np.array([0.7 * lip_l, lip_a, lip_b])
    lab += (0.8 * rim * parted)[..., None] * (rim_c - lab)
    # A sliver of an opening shows no bright sliver of teeth (it reads as an artefact): there they
    # fade into the dark lip line.
    fade = _smoothstep(0.15 * unit, 0.45 * unit, tl - tu)[..., None]
    lab = cavity + fade * (lab - cavity)
    # Buccal corridors and the light across the lips.
    lab[..., 0] *= 1.0 - 0.6 * _smoothstep(0.28 * width, 0.52 * width, np.abs(s))
    lab[..., 0] *= np.clip(1.0 + colours.light_slope * s / width, 0.5, 1.5)

    poly = np.zeros((h * ss, w * ss), np.uint8)
    pts = np.round((inner - [x0, y0] + 0.5) * ss * 16 - 8).astype(np.int32)  # pixel centres, 4-bit fraction
    cv2.fillPoly(poly, [pts], 1, lineType=cv2.LINE_8, shift=4)
    # Only a closed mouth's line is grown onto the lips: an open mouth's lips keep their colour.
    grow = LINE * size * ss * (1.0 - float(_smoothstep(0.2 * unit, 0.6 * unit, np.array(gap))))
    dist = cv2.distanceTransform(1 - poly, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    alpha = np.clip(grow + 1.0 - dist, 0.0, 1.0).astype(np.float32)  # dist: 0 inside, 1 next to it

    lab8 = cv2.resize(lab.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(np.clip(np.rint(lab8), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)
    if BLUR * size >= 0.3:  # a photo's teeth are never sharper than its lips
        rgb = cv2.GaussianBlur(rgb, (0, 0), BLUR * size)
    if colours.grain > 0:
        rgb += np.random.default_rng(seed).normal(0.0, colours.grain, (h, w))[..., None].astype(np.float32)
    if colours.grey:
        rgb = np.repeat(rgb.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(rgb, 0.0, 255.0), alpha
