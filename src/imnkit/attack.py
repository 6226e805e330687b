"""The network-inverse attack: what anyone with imnkit and a masked photo, but no aux, gets back.

The paper's network has no secret: its inverse run over a whole masked photo with zero noise
(``recovered = cover + secret`` for weights that hide the difference) gives back faces hidden by
the ``inn`` method. The keyed methods must give back nothing of the original. Tests and
``benchmarks/roundtrip.py`` use this to check each method's claim.
"""

from __future__ import annotations

import numpy as np
import torch


def network_inverse(masked: np.ndarray, weights: str = "imn.default", net=None) -> np.ndarray:
    """Run the IMN backwards over a whole (H, W, 3) uint8 masked image with n = 0; uint8 result.

    Odd sides are cropped to even ones (the Haar DWT's need) and the last row/column copied back.
    """
    from .embedding import load_network
    from .imageconv import to_float, to_uint8
    from .nets.imn import recover_protected

    if net is None:
        net = load_network(weights, torch.device("cpu"))
    h, w = masked.shape[:2]
    even = masked[: h - h % 2, : w - w % 2]
    x = to_float(even)
    with torch.inference_mode():
        out = recover_protected(net, x, torch.zeros_like(x))
    result = masked.copy()
    result[: h - h % 2, : w - w % 2] = to_uint8(out).numpy()
    return result
