"""Expression measures of a face from its 68 landmarks (iBUG 68 scheme, 0-based indices).

Each measure is a ratio of landmark distances, so it does not depend on the face's size, and
each is normalised by distances that an expression barely changes:

* mouth opening: mean inner-lip gap ``d(61,67), d(62,66), d(63,65)`` over the inner mouth
  width ``d(60,64)``;
* smile width: mouth-corner distance ``d(48,54)`` over the outer eye-corner distance ``d(36,45)``;
* eye opening: mean eyelid gap ``d(37,41), d(38,40), d(43,47), d(44,46)`` over the mean eye
  width ``d(36,39), d(42,45)``.

The classical swap keeps these three of the protected face on the Mask, and
``benchmarks/naturalness.py`` measures how well it does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imnkit.errors import UsageError


@dataclass(frozen=True)
class Expression:
    """The three expression ratios of one face."""

    mouth_open: float
    smile_width: float
    eye_open: float


def _d(lm: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(lm[a] - lm[b]))


def check_68(landmarks: np.ndarray) -> np.ndarray:
    """Check and return (68, 2) float64 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise UsageError(f"expected finite (68, 2) landmarks, got shape {tuple(lm.shape)}")
    return lm


def measure(landmarks: np.ndarray) -> Expression:
    """Mouth opening, smile width and eye opening of one face (see the module docstring)."""
    lm = check_68(landmarks)
    gap = np.mean([_d(lm, 61, 67), _d(lm, 62, 66), _d(lm, 63, 65)])
    lids = np.mean([_d(lm, 37, 41), _d(lm, 38, 40), _d(lm, 43, 47), _d(lm, 44, 46)])
    eye_w = np.mean([_d(lm, 36, 39), _d(lm, 42, 45)])
    return Expression(
        mouth_open=float(gap / max(_d(lm, 60, 64), 1e-6)),
        smile_width=float(_d(lm, 48, 54) / max(_d(lm, 36, 45), 1e-6)),
        eye_open=float(lids / max(eye_w, 1e-6)),
    )
