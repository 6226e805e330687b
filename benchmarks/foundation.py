"""Foundation measurements: metric agreement with scikit-image and the Haar round-trip error.

    python benchmarks/foundation.py --data ../shared/data/faces [--json OUT]

For every photo in DATA, compares imnkit's PSNR (RGB, Y), SSIM, RMSE and MAE with scikit-image
on (photo, JPEG-q60 copy) and reports the largest absolute disagreement; and runs the float32
Haar DWT -> IWT on the photo, reporting the largest round-trip error (0-1 scale).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from imnkit.dwt import haar_dwt, haar_iwt
    from imnkit.imageio import IMAGE_SUFFIXES, load_image
    from imnkit.metrics import compare

    worst = {k: 0.0 for k in ("psnr_rgb", "psnr_y", "ssim", "rmse", "mae")}
    dwt_err = 0.0
    rows = []
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in files:
        img = load_image(path)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=60)
        other = np.asarray(Image.open(buf).convert("RGB"))
        t0 = time.perf_counter()
        ours = compare(img, other).to_dict()
        t_ours = time.perf_counter() - t0
        af, bf = img.astype(np.float64), other.astype(np.float64)
        ref = {
            "psnr_rgb": peak_signal_noise_ratio(img, other, data_range=255),
            "psnr_y": peak_signal_noise_ratio(rgb2ycbcr(img)[..., 0], rgb2ycbcr(other)[..., 0], data_range=255),
            "ssim": structural_similarity(img, other, channel_axis=2, data_range=255, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False),
            "rmse": math.sqrt(float(np.mean((af - bf) ** 2))),
            "mae": float(np.mean(np.abs(af - bf))),
        }
        for k in worst:
            worst[k] = max(worst[k], abs(ours[k] - ref[k]))
        h, w = img.shape[:2]
        x = torch.from_numpy(img[: h - h % 2, : w - w % 2]).permute(2, 0, 1)[None].float() / 255
        err = (haar_iwt(haar_dwt(x)) - x).abs().max().item()
        dwt_err = max(dwt_err, err)
        rows.append({"file": path.name, "size": [w, h], "metrics_s": round(t_ours, 3), "dwt_max_err": err})
    report = {"photos": len(files), "max_abs_diff_vs_skimage": worst, "dwt_roundtrip_max_abs_err": dwt_err, "rows": rows}
    print(f"{len(files)} photos; largest |imnkit - scikit-image|: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    print(f"Haar DWT->IWT float32 round trip, largest error: {dwt_err:.2e} (0-1 scale)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
