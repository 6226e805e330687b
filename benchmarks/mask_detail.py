#!/usr/bin/env python
"""Do the Mask's eyes and cheeks have the photo's sharpness, grain and lid lightness (issue 27)?

For every face (box side >= ``--min-side`` px) of the photos of ``--faces DIR`` matching ``--glob``
it makes the Mask as the default recipe does (detection with the align stage's upsampling,
``swap_faces(img, faces, seed=0)``), re-fits the 68 landmarks on the Mask inside the face's box
(as benchmarks/naturalness.py does) and compares the Mask with the same photo's original face,
region by region, on luminance Y (Rec. 601):

* regions: each eye (the polygon of landmarks 36-41 / 42-47 grown ``EYE_GROW`` x about its centre,
  so the lids and lashes are in), and the cheeks (both sides: below the eye, beside the nose,
  above the mouth corner, in from the jaw; pixels far from the cheek's median lightness, such as a
  strand of hair or a glasses frame, are left out). The original's regions come from its detected
  landmarks, the Mask's from its re-fitted ones.
* sharpness: std(Y - G(Y, s1)) / std(G(Y, s1) - G(Y, s2)), the fine detail against the mid-scale
  detail, s1 = max(0.6 px, 0.004 W), s2 = 0.02 W, W the face width (jaw 0 to 16). A smeared
  region has a low ratio, an over-sharpened or noisy one a high ratio.
* grain: a robust noise sigma, 1.4826 median|Y - G(Y, 0.7 px) - median| (grey levels).
* dark ring (eyes): mean Y of the ring (the grown eye polygon minus the eye) over the cheeks' mean Y;
  a Mask with darker lids/under-eyes than the person's reads below 1 as Mask/original.
* dark lines (eyes): the ring's 5th-percentile Y over the cheeks' mean Y: painted liner and heavy
  lash lines darken the ring's darkest pixels while barely moving its mean.

Per face it prints the Mask/original ratio of each figure (eyes: geometric mean of the two eyes),
then over the faces the median ratio and the share within [0.8, 1.25]. ``--json PATH`` writes
the per-face figures (both sides' raw values included). ``--selftest`` checks that the measures can
fail (blur lowers the sharpness ratio, noise raises the grain, a darkened ring lowers the ring
figure) on a scikit-image photo, not on the faces set.

Usage:
    PYTHONPATH=src python benchmarks/mask_detail.py --faces ../shared/data/faces [--glob 'portrait_*'] [--json out.json]
    python benchmarks/mask_detail.py --selftest
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

EYE_GROW = 2.0
BAND = (0.8, 1.25)
LEFT_EYE, RIGHT_EYE = np.r_[36:42], np.r_[42:48]
GRAIN_SIGMA = 0.7
MEASURES = ("eye_sharpness", "eye_grain", "dark_ring", "dark_lines", "cheek_sharpness", "cheek_grain")
LINE_PERCENTILE = 5  # the ring's darkest pixels: liner and lash lines


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB uint8 image, float32 grey levels."""
    return cv2.transform(rgb.astype(np.float32), np.array([[0.299, 0.587, 0.114]], np.float32))


def _blur(y: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(y, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def scales(face_width: float) -> tuple[float, float]:
    """(s1, s2): the fine and mid-scale blurs for a face ``face_width`` px wide."""
    return max(0.6, 0.004 * face_width), max(1.5, 0.02 * face_width)


def sharpness(y: np.ndarray, sel: np.ndarray, s1: float, s2: float) -> float:
    """Fine-to-mid detail ratio of ``y`` over ``sel`` (bool): low when smeared."""
    g1 = _blur(y, s1)
    fine, mid = (y - g1)[sel], (g1 - _blur(y, s2))[sel]
    return float(fine.std() / max(mid.std(), 1e-6))


def grain(y: np.ndarray, sel: np.ndarray) -> float:
    """Robust noise sigma (grey levels) of ``y`` over ``sel`` (bool)."""
    hp = (y - _blur(y, GRAIN_SIGMA))[sel]
    return float(1.4826 * np.median(np.abs(hp - np.median(hp))))


def poly_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Bool mask of the convex hull of ``pts`` ((x, y) px)."""
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts * 16).astype(np.int32)), 1, cv2.LINE_8, shift=4)
    return m.astype(bool)


def grown(pts: np.ndarray, k: float) -> np.ndarray:
    c = pts.mean(axis=0)
    return c + k * (pts - c)


def _lerp(lm: np.ndarray, a: int, b: int, t: float) -> np.ndarray:
    return lm[a] + t * (lm[b] - lm[a])


def cheek_polygons(lm: np.ndarray) -> list[np.ndarray]:
    """The two cheeks' polygons: below the eye, beside the nose, above the mouth corner, in from the jaw."""
    out = []
    # (lower lid points, inner-eye side nose base, mouth corner, jaw points at eye/nose/mouth level)
    for lid, nose, mouth, jaw in (((41, 40), 31, 48, (1, 2, 3)), ((46, 47), 35, 54, (15, 14, 13))):
        out.append(np.array([
            _lerp(lm, lid[0], mouth, 0.22), _lerp(lm, lid[1], mouth, 0.22),
            _lerp(lm, nose, jaw[1], 0.15), _lerp(lm, mouth, jaw[2], 0.25),
            _lerp(lm, jaw[2], mouth, 0.3), _lerp(lm, jaw[1], nose, 0.25), _lerp(lm, jaw[0], nose, 0.3),
        ]))
    return out


def regions(shape: tuple[int, int], lm: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Bool masks: each eye (grown), each eye's ring (grown minus the eye) and the cheeks (skin only)."""
    out: dict[str, np.ndarray] = {}
    for name, idx in (("eye_l", LEFT_EYE), ("eye_r", RIGHT_EYE)):
        big = poly_mask(shape, grown(lm[idx], EYE_GROW))
        out[name] = big
        out[name + "_ring"] = big & ~poly_mask(shape, lm[idx])
    cheek = np.zeros(shape, bool)
    for poly in cheek_polygons(lm):
        cheek |= poly_mask(shape, poly)
    cheek &= ~(out["eye_l"] | out["eye_r"])
    if cheek.sum() > 32:
        # Skin only: a strand of hair, a glasses frame or a nostril's shadow is far from the cheek's median.
        v = y[cheek]
        med = np.median(v)
        mad = max(1.4826 * np.median(np.abs(v - med)), 2.0)
        cheek &= np.abs(y - med) <= 3.0 * mad
    out["cheek"] = cheek
    return out


def region_figures(rgb: np.ndarray, lm: np.ndarray, face_width: float) -> dict[str, float] | None:
    """Sharpness and grain of each region, and each eye ring's lightness over the cheeks' (None: too small)."""
    y = luminance(rgb)
    regs = regions(y.shape, lm, y)
    if min(int(m.sum()) for m in regs.values()) < 24:
        return None
    s1, s2 = scales(face_width)
    cheek_mean = float(y[regs["cheek"]].mean())
    fig: dict[str, float] = {"cheek_sharpness": sharpness(y, regs["cheek"], s1, s2),
                             "cheek_grain": grain(y, regs["cheek"])}
    for eye in ("eye_l", "eye_r"):
        fig[eye + "_sharpness"] = sharpness(y, regs[eye], s1, s2)
        fig[eye + "_grain"] = grain(y, regs[eye])
        ring = y[regs[eye + "_ring"]]
        fig[eye + "_ring"] = float(ring.mean()) / max(cheek_mean, 1.0)
        fig[eye + "_lines"] = float(np.percentile(ring, LINE_PERCENTILE)) / max(cheek_mean, 1.0)
    return fig


def compare(orig: dict[str, float], mask: dict[str, float]) -> dict[str, float]:
    """Mask/original ratios per measure (eyes: geometric mean of the two)."""
    def r(key: str) -> float:
        return mask[key] / max(orig[key], 1e-6)

    def eyes(kind: str) -> float:
        return float(np.sqrt(r("eye_l_" + kind) * r("eye_r_" + kind)))

    return {"eye_sharpness": eyes("sharpness"), "eye_grain": eyes("grain"), "dark_ring": eyes("ring"),
            "dark_lines": eyes("lines"),
            "cheek_sharpness": r("cheek_sharpness"), "cheek_grain": r("cheek_grain")}


def summarise(rows: list[dict]) -> dict:
    """Median Mask/original ratio and % of faces within BAND, per measure."""
    out: dict = {"faces": len(rows), "band": list(BAND)}
    for m in MEASURES:
        v = np.array([r["ratio"][m] for r in rows])
        if v.size:
            out[m] = {"median": round(float(np.median(v)), 3),
                      "within_band_pct": round(100.0 * float(np.mean((v >= BAND[0]) & (v <= BAND[1]))), 1),
                      "q25": round(float(np.percentile(v, 25)), 3), "q75": round(float(np.percentile(v, 75)), 3)}
    return out


def face_width(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[16] - lm[0]))


def selftest() -> None:
    """The measures can fail: blur lowers sharpness, noise raises grain, a darkened ring lowers the ring."""
    from skimage import data

    img = data.astronaut()  # 512^2 RGB; a flat-ish patch of the suit and a textured one of the flag/face
    y = luminance(img)
    sel = np.zeros(y.shape, bool)
    sel[180:330, 160:300] = True  # the face and helmet edge: real detail
    s1, s2 = scales(200.0)
    base_s, base_g = sharpness(y, sel, s1, s2), grain(y, sel)
    blurred = luminance(cv2.GaussianBlur(img, (0, 0), 1.5))
    noisy = luminance(np.clip(img + np.random.default_rng(0).normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    s_blur, g_noise = sharpness(blurred, sel, s1, s2), grain(noisy, sel)
    print(f"sharpness {base_s:.3f} -> blurred {s_blur:.3f}; grain {base_g:.2f} -> noisy {g_noise:.2f}")
    assert s_blur < 0.8 * base_s, "blur must lower the sharpness ratio"
    assert g_noise > 1.25 * base_g, "noise must raise the grain"
    # A synthetic face layout: eye polygons on a flat skin, ring darkened.
    lm = _synthetic_landmarks()
    skin = np.full((400, 400, 3), 180, np.uint8)
    skin = np.clip(skin + np.random.default_rng(1).normal(0, 3, skin.shape), 0, 255).astype(np.uint8)
    dark = skin.copy()
    regs = regions(skin.shape[:2], lm, luminance(skin))
    dark[regs["eye_l_ring"] | regs["eye_r_ring"]] -= 40
    a, b = region_figures(skin, lm, face_width(lm)), region_figures(dark, lm, face_width(lm))
    ratio = compare(a, b)
    print(f"dark ring Mask/original after darkening the lids by 40 levels: {ratio['dark_ring']:.3f}")
    assert ratio["dark_ring"] < BAND[0], "a darkened ring must fall out of the band"
    print("selftest passed")


def _synthetic_landmarks() -> np.ndarray:
    """A plausible frontal 68-point layout on a 400 px canvas (jaw, brows, nose, eyes, mouth)."""
    lm = np.zeros((68, 2))
    t = np.linspace(-1, 1, 17)
    lm[:17] = np.c_[200 + 150 * t, 170 + 170 * np.sqrt(1 - t ** 2)]
    lm[17:22] = np.c_[np.linspace(80, 170, 5), np.full(5, 130)]
    lm[22:27] = np.c_[np.linspace(230, 320, 5), np.full(5, 130)]
    lm[27:31] = np.c_[np.full(4, 200), np.linspace(160, 230, 4)]
    lm[31:36] = np.c_[np.linspace(175, 225, 5), np.full(5, 245)]
    for base, cx in ((36, 130), (42, 270)):
        ang = np.deg2rad([180, 120, 60, 0, -60, -120])
        lm[base:base + 6] = np.c_[cx + 30 * np.cos(ang), 170 - 10 * np.sin(ang)]
    ang = np.deg2rad(np.linspace(180, -150, 12))
    lm[48:60] = np.c_[200 + 50 * np.cos(ang), 295 - 15 * np.sin(ang)]
    ang = np.deg2rad(np.linspace(180, -135, 8))
    lm[60:68] = np.c_[200 + 35 * np.cos(ang), 295 - 4 * np.sin(ang)]
    return lm


def measure_photos(faces_dir: Path, pattern: str, min_side: int) -> list[dict]:
    """Per-face figures (original, Mask, Mask/original ratios) over the photos."""
    from imnkit.face.detect import detect_faces, fit_landmarks, make_face, predictor_box
    from imnkit.face.swap import swap_faces
    from imnkit.imageio import load_image
    from imnkit.stage import get_stage

    upsample = get_stage("align").resolve_params({})["upsample"]
    photos = sorted(p for p in faces_dir.glob(pattern) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not photos:
        raise SystemExit(f"no photos matching {pattern} in {faces_dir}")
    rows = []
    for path in photos:
        img = load_image(path, background=(255, 255, 255))
        faces = detect_faces(img, upsample=upsample).faces  # as the default recipe's align stage
        if not faces:
            continue
        res = swap_faces(img, faces, seed=0)
        for k, (face, name) in enumerate(zip(faces, res.identities)):
            y0, x0, y1, x1 = face.box
            if min(y1 - y0, x1 - x0) < min_side or res.face_regions[k] is None:
                continue
            again = make_face(fit_landmarks(res.image, predictor_box(face)), face.box)
            lm_o = np.asarray(face.landmarks, np.float64)
            lm_m = np.asarray(again.landmarks, np.float64)
            w = face_width(lm_o)
            orig, mask = region_figures(img, lm_o, w), region_figures(res.image, lm_m, w)
            if orig is None or mask is None:
                continue
            rows.append({"photo": path.name, "face": k, "identity": name, "face_width": round(w, 1),
                         "original": {k2: round(v, 4) for k2, v in orig.items()},
                         "mask": {k2: round(v, 4) for k2, v in mask.items()},
                         "ratio": {k2: round(v, 4) for k2, v in compare(orig, mask).items()}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, help="folder of photos")
    ap.add_argument("--glob", default="portrait_*", help="which photos of the folder (default portrait_*)")
    ap.add_argument("--min-side", type=int, default=64, help="smallest face box side measured (px)")
    ap.add_argument("--json", type=Path, help="write the per-face figures here")
    ap.add_argument("--selftest", action="store_true", help="check the measures can fail, then exit")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    if args.faces is None:
        ap.error("--faces is required (or --selftest)")
    rows = measure_photos(args.faces, args.glob, args.min_side)
    print(f"{'photo':26s} f {'identity':18s} " + " ".join(f"{m:>15s}" for m in MEASURES))
    for r in rows:
        print(f"{r['photo']:26s} {r['face']} {r['identity']:18s} "
              + " ".join(f"{r['ratio'][m]:15.3f}" for m in MEASURES))
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "faces": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
