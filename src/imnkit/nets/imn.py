"""Invertible "Mask" Network (IMN): Haar DWT -> K affine coupling blocks -> IWT.

Upstream: the IMN paper (sections 2.2-2.4) with the coupling of HiNet / ISN, as fixed in
``shared/paper/NOTES.md`` (the paper's eq. (3) is not invertible). No upstream weights: imnkit trains
its own (``imnkit.train``). Licence of this file: MIT (imnkit).

Coupling, with c = cover (Mask) branch and s = secret branch, both (B, 12, H/2, W/2) after the DWT::

    c' = c + phi(s)
    s' = s * exp(2 * clamp * (sigmoid(rho(c')) - 0.5)) + eta(c')

Inverse::

    s = (s' - eta(c')) * exp(-2 * clamp * (sigmoid(rho(c')) - 0.5))
    c = c' - phi(s)

Contract:
    ``forward(secret, mask)``: two (B, 3, H, W) float tensors, H and W even; images in [0, 1] or, when
    hiding the difference, ``protected - mask`` in [-1, 1]. Returns ``(masked, lost)``, both
    (B, 3, H, W) float32 (or float64 if given float64), unclamped and unrounded.
    ``inverse(masked, aux_noise)``: returns ``(recovered_secret, recovered_mask)``.

Convention: the net is computed in float32 or wider with autocast disabled, so that put on / put off
give the same numbers whatever precision the caller runs in. Only training may opt into autocast
(``allow_autocast=True``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Literal

import torch
from torch import nn

from imnkit.dwt import haar_dwt, haar_iwt

__all__ = [
    "CouplingBlock",
    "DenseBlock",
    "ImnConfig",
    "InvertibleMaskNet",
    "check_image_pair",
    "draw_aux_noise",
    "masked_error",
    "put_off",
    "put_on",
    "recover_protected",
    "refine_masked",
    "secret_of",
]

HideMode = Literal["image", "difference"]
_HIDE_MODES = ("image", "difference")


@dataclass(frozen=True)
class ImnConfig:
    """Architecture of an :class:`InvertibleMaskNet`; stored as JSON in the weights' metadata.

    Args:
        num_blocks: number K of coupling blocks.
        growth: growth channels of each dense block (ESRGAN default 32).
        clamp: soft clamp of the affine scale (the log-scale lies in [-clamp, clamp]).
        hide: ``"image"`` hides the protected face itself; ``"difference"`` hides
            ``protected - mask`` and recovers ``recovered_mask + recovered_difference``.
    """

    num_blocks: int = 8
    growth: int = 32
    clamp: float = 2.0
    hide: HideMode = "image"

    def __post_init__(self) -> None:
        if not isinstance(self.num_blocks, int) or self.num_blocks < 1:
            raise ValueError(f"ImnConfig.num_blocks must be a positive int, got {self.num_blocks!r}")
        if not isinstance(self.growth, int) or self.growth < 1:
            raise ValueError(f"ImnConfig.growth must be a positive int, got {self.growth!r}")
        if not (isinstance(self.clamp, (int, float)) and math.isfinite(self.clamp) and self.clamp > 0):
            raise ValueError(f"ImnConfig.clamp must be a positive finite number, got {self.clamp!r}")
        if self.hide not in _HIDE_MODES:
            raise ValueError(f"ImnConfig.hide must be one of {_HIDE_MODES}, got {self.hide!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImnConfig:
        """Build from a dict; unknown keys are an error (a newer format we cannot honour)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ImnConfig: unknown keys {unknown}")
        kwargs = dict(data)
        if "clamp" in kwargs:
            kwargs["clamp"] = float(kwargs["clamp"])
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ImnConfig:
        data = json.loads(text)
        if not isinstance(data, dict):  # malformed metadata is a value problem for callers
            raise ValueError("ImnConfig JSON must be an object")  # noqa: TRY004
        return cls.from_dict(data)


class DenseBlock(nn.Module):
    """ESRGAN RRDB dense block: five 3x3 convs with dense concatenation, LeakyReLU(0.2).

    The last conv maps back to ``channels`` and is zero-initialised, so the block outputs 0 at init.
    """

    def __init__(self, channels: int = 12, growth: int = 32):
        super().__init__()
        g = growth
        self.conv1 = nn.Conv2d(channels, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(channels + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(channels + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(channels + 4 * g, channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Small weights (0.01 * N(0, 1)) as in the reference hiding code; last conv zero -> identity.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.conv5.weight)
        nn.init.zeros_(self.conv5.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1))


class CouplingBlock(nn.Module):
    """One affine coupling block (see the module docstring for the equations)."""

    def __init__(self, channels: int = 12, growth: int = 32, clamp: float = 2.0):
        super().__init__()
        self.clamp = float(clamp)
        self.phi = DenseBlock(channels, growth)
        self.rho = DenseBlock(channels, growth)
        self.eta = DenseBlock(channels, growth)

    def _log_scale(self, c: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.clamp * (torch.sigmoid(self.rho(c)) - 0.5)

    def forward(self, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c2 = c + self.phi(s)
        s2 = s * torch.exp(self._log_scale(c2)) + self.eta(c2)
        return c2, s2

    def inverse(self, c2: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = (s2 - self.eta(c2)) * torch.exp(-self._log_scale(c2))
        c = c2 - self.phi(s)
        return c, s


def check_image_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    """Raise ``ValueError`` (naming the shapes) unless a and b are equal (B, 3, H, W), H, W even."""
    for t, name in ((a, names[0]), (b, names[1])):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(t.shape)}")
        if t.shape[-2] % 2 or t.shape[-1] % 2:
            raise ValueError(f"{name} needs even height and width, got shape {tuple(t.shape)}")
        if t.shape[-2] < 2 or t.shape[-1] < 2:
            raise ValueError(f"{name} is too small, got shape {tuple(t.shape)}")
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Cast up to float32 (keep float64) so the invertible maths never runs in half precision."""
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


class InvertibleMaskNet(nn.Module):
    """Invertible Mask Network: ``(masked, lost) = f(secret, mask)``, ``(secret, mask) = f^-1(masked, n)``.

    Args:
        config: an :class:`ImnConfig`; or pass its fields as keyword arguments.

    Shape:
        All inputs and outputs: (B, 3, H, W) with H and W even.

    Example:
        >>> net = InvertibleMaskNet(num_blocks=2, growth=8)
        >>> x = torch.rand(1, 3, 16, 16); m = torch.rand(1, 3, 16, 16)
        >>> masked, lost = net(x, m)
        >>> bool(torch.allclose(masked, m))  # identity at init
        True
    """

    def __init__(self, config: ImnConfig | None = None, **kwargs: Any):
        super().__init__()
        if config is None:
            config = ImnConfig(**kwargs)
        elif kwargs:
            raise ValueError("pass either an ImnConfig or keyword fields, not both")
        self.config = config
        self.blocks = nn.ModuleList(
            CouplingBlock(12, config.growth, config.clamp) for _ in range(config.num_blocks)
        )

    def _no_autocast(self, device_type: str, allow_autocast: bool) -> contextlib.AbstractContextManager:
        if allow_autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, enabled=False)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """Give the sub-bands the memory layout of the conv weights (channels_last after
        ``net.to(memory_format=torch.channels_last)``): mixed layouts make every dense-block
        concatenation copy, which costs more than the convolutions on the CPU."""
        first = next(self.parameters(), None)
        if first is not None and first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(
        self, secret: torch.Tensor, mask: torch.Tensor, *, allow_autocast: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Put on: hide ``secret`` in ``mask``. Returns ``(masked, lost)``.

        ``allow_autocast`` is for training only; inference always runs in float32 or wider.
        """
        check_image_pair(secret, mask, ("secret", "mask"))
        dtype = torch.promote_types(_wide(secret).dtype, _wide(mask).dtype)
        with self._no_autocast(secret.device.type, allow_autocast):
            s = self._layout(haar_dwt(secret.to(dtype)))
            c = self._layout(haar_dwt(mask.to(dtype)))
            for block in self.blocks:
                c, s = block(c, s)
            return haar_iwt(c), haar_iwt(s)

    def inverse(
        self, masked: torch.Tensor, aux_noise: torch.Tensor, *, allow_autocast: bool = False,
        checkpoint: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Put off: from ``masked`` and auxiliary noise. Returns ``(recovered_secret, recovered_mask)``.

        ``checkpoint``: under autograd, keep only each block's inputs and recompute the block in the
        backward pass (the same values; ~1/6 of the memory for one more forward pass).
        """
        from torch.utils.checkpoint import checkpoint as recompute

        check_image_pair(masked, aux_noise, ("masked", "aux_noise"))
        dtype = torch.promote_types(_wide(masked).dtype, _wide(aux_noise).dtype)
        with self._no_autocast(masked.device.type, allow_autocast):
            c = self._layout(haar_dwt(masked.to(dtype)))
            s = self._layout(haar_dwt(aux_noise.to(dtype)))
            for block in reversed(self.blocks):
                if checkpoint and torch.is_grad_enabled():
                    c, s = recompute(block.inverse, c, s, use_reentrant=False)
                else:
                    c, s = block.inverse(c, s)
            return haar_iwt(s), haar_iwt(c)


def draw_aux_noise(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw n ~ N(0, 1) of ``shape`` from an integer seed, on the CPU, so any device gets the same values."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
    noise = torch.randn(tuple(shape), generator=gen, dtype=torch.float32, device="cpu")
    return noise.to(device=device if device is not None else "cpu", dtype=dtype)


def secret_of(net: InvertibleMaskNet, protected: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What ``net`` hides: ``protected - mask`` (in float32 or wider) when ``net.config.hide`` is
    ``"difference"``, else ``protected`` itself. ``net(secret_of(net, p, m), m)`` is :func:`put_on`."""
    if net.config.hide == "difference":
        return _wide(protected) - _wide(mask)
    return protected


def put_on(net: InvertibleMaskNet, protected: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hide ``protected`` in ``mask`` according to ``net.config.hide``; returns masked (float, unrounded).

    Both inputs (B, 3, H, W) in [0, 1], H and W even. The caller rounds/saves the result as 8 bits.
    """
    check_image_pair(protected, mask, ("protected", "mask"))
    masked, _lost = net(secret_of(net, protected, mask), mask)
    return masked


#: Regions larger than this (pixels) refine with per-block recomputation (memory, see refine_masked).
REFINE_CHECKPOINT_PIXELS = 512 * 512

#: BT.601 full-range RGB -> Y, Cb, Cr (the JPEG matrix), for weighting the masked image's error.
#: Plain numbers: a module-level tensor made while a caller is in inference mode could not be used
#: in refine's autograd.
YCBCR_MATRIX = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def masked_error(masked: torch.Tensor, mask: torch.Tensor, chroma_weight: float | None) -> torch.Tensor:
    """Mean squared error of ``masked`` against ``mask`` (B, 3, H, W): plain RGB when ``chroma_weight``
    is None, else on Y, Cb, Cr weighted 1 : c : c, scaled so that an error equal in R, G and B costs
    what it costs in RGB (the eye, and the paper's Y-PSNR, see luma more than colour)."""
    if chroma_weight is None:
        return torch.mean((masked - mask) ** 2)
    ycc = torch.tensor(YCBCR_MATRIX, device=masked.device, dtype=masked.dtype)
    weights = torch.tensor([1.0, chroma_weight, chroma_weight], device=masked.device, dtype=masked.dtype)
    weights = weights * 3 / (weights * (ycc**2).sum(1)).sum()
    diff = torch.einsum("ij,bjhw->bihw", ycc, masked - mask)
    return torch.mean(weights.view(1, 3, 1, 1) * diff**2)


def refine_masked(net: InvertibleMaskNet, protected: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor,
                  seed: int, steps: int, lr: float = 0.1 / 255, mask_weight: float = 1.0,
                  on_step: Callable[[int], None] | None = None, cosine: bool = True,
                  chroma_weight: float | None = 0.5) -> torch.Tensor:
    """Adjust ``masked`` so that :func:`put_off` with ``seed`` recovers ``protected`` more closely.

    Extraction reads 8-bit pixels and replaces the lost information m with n drawn from the seed in
    the aux; embedding can run exactly that and correct what it gets wrong: ``steps`` Adam steps on
    the masked pixels, through the 8-bit rounding (straight-through), minimising
    ``|put_off(masked) - protected|² + mask_weight * masked_error(masked, mask, chroma_weight)``,
    the rate falling from ``lr`` to 0 along a cosine (``cosine=False``: a constant rate). Each step
    costs about three network passes (plus one to score the last step); the point with the lowest
    objective is returned, so the result is never worse than ``masked`` by that objective. What it gains depends on the
    weights (docs/model-card.md, refine). Works under ``torch.inference_mode`` (it computes on
    copies). ``on_step(k)`` is called after step k (progress). ``chroma_weight`` 0.5 (see
    :func:`masked_error`) was chosen on training crops (benchmarks/refine_study.py): against plain
    RGB error it adds ~0.4 dB to the masked Y-PSNR, recovery unchanged, masked RGB-PSNR -0.07 dB.
    Returns the refined float masked image (unrounded, in [0, 1]).
    """
    if steps <= 0:
        return masked
    # Autograd through the network holds ~9 GB per megapixel: larger regions recompute each block in
    # the backward pass instead (a 1390x1296 face region once took 16 GB and was killed).
    checkpoint = masked.shape[-2] * masked.shape[-1] > REFINE_CHECKPOINT_PIXELS
    with torch.inference_mode(False), torch.enable_grad():
        work = copy.deepcopy(net).eval()  # normal tensors, even when ``net`` was made in inference mode
        for p in work.parameters():
            p.requires_grad_(False)
        protected, mask = protected.clone(), mask.clone()
        x = masked.detach().clone().clamp_(0.0, 1.0).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        # The rate decays to 0 (cosine): late steps settle on an 8-bit point instead of hopping
        # between roundings; on face crops this doubled what 30 steps gain (docs/model-card.md).
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if cosine else None
        # Each step's loss is the exact objective at its 8-bit point, so the best point seen is kept:
        # Adam through the rounding is not monotone (one step can make the saved image worse).
        best_loss, best = float("inf"), x.detach().clone()
        for step in range(steps + 1):
            q = x + (torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0 - x).detach()  # 8-bit, straight-through
            recovered = put_off(work, q, seed, checkpoint=checkpoint)
            loss = torch.mean((recovered - protected) ** 2) + mask_weight * masked_error(q, mask, chroma_weight)
            value = float(loss.detach())
            if value < best_loss:
                best_loss, best = value, x.detach().clone()
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            if on_step is not None:
                on_step(step + 1)
        return best


def put_off(net: InvertibleMaskNet, masked: torch.Tensor, seed: int, checkpoint: bool = False) -> torch.Tensor:
    """Recover the protected image from ``masked`` (B, 3, H, W in [0, 1]); returns it clamped to [0, 1].

    The auxiliary noise is drawn from ``seed`` (:func:`draw_aux_noise`); with ``hide="difference"``
    the result is ``recovered_mask + recovered_difference``.
    """
    noise = draw_aux_noise(masked.shape, seed, device=masked.device)
    if masked.dim() == 4 and masked.is_contiguous(memory_format=torch.channels_last):
        noise = noise.contiguous(memory_format=torch.channels_last)  # same values, the layout of `masked`
    return recover_protected(net, masked, noise, checkpoint)


def recover_protected(net: InvertibleMaskNet, masked: torch.Tensor, aux: torch.Tensor,
                      checkpoint: bool = False) -> torch.Tensor:
    """The protected image from ``masked`` and the lost-information input ``aux`` (n, or m in studies).

    With ``hide="difference"`` it is ``recovered_mask + recovered_difference``; clamped to [0, 1].
    ``checkpoint``: see :meth:`InvertibleMaskNet.inverse`.
    """
    rec_secret, rec_mask = net.inverse(masked, aux, checkpoint=checkpoint)
    rec = rec_mask + rec_secret if net.config.hide == "difference" else rec_secret
    return rec.clamp(0.0, 1.0)
