"""GPEN blind face restoration generator (``FullGenerator``), pure PyTorch (CPU and CUDA).

Upstream: https://github.com/yangxy/GPEN ``face_model/gpen_model.py``, ``face_model/op/upfirdn2d.py``
and ``face_model/op/fused_act.py``, read at commit ``2c736702983368847fb544d234a22ac7cff25802``.
Licence: the GPEN repository ships no licence file at that commit (all rights reserved by
default) and its README restricts the released weights for commercial reasons; treat GPEN
weights as research / non-commercial only. GPEN builds on rosinality/stylegan2-pytorch (MIT)
and NVIDIA's StyleGAN2 CUDA ops (Nvidia Source Code License-NC). This file is an independent
re-implementation with no custom CUDA: ``upfirdn2d`` and the fused bias + leaky ReLU are written
with plain torch ops, following upstream's names and order of operations so that the public
state_dicts (``GPEN-BFR-256.pth``, ``GPEN-BFR-512.pth``) load strictly.

Architecture facts:

- equalised learning rate everywhere: conv/linear weights are stored N(0, 1) and multiplied by
  ``1/sqrt(fan_in)`` (times ``lr_mul``, 0.01 for the mapping MLP, whose bias is also scaled);
- fused leaky ReLU = ``sqrt(2) * leaky_relu(x + bias, 0.2)``;
- FIR kernel ``[1, 3, 3, 1]`` (outer product, normalised to sum 1; times 4 when upsampling),
  stored as persistent ``.kernel`` buffers because the public checkpoints contain them;
- encoder ``ecd0`` (1x1 conv) then ``ecd1..`` (blur -> 3x3 stride-2 conv -> fused lrelu) down to
  4x4, ``final_linear`` to a 512-d code, which goes through the StyleGAN2 mapping MLP
  (PixelNorm + 8 equalised linears) to one W used by every layer;
- StyleGAN2 synthesis with *concatenated* noise: each styled conv appends ``weight * noise``
  as extra channels (hence ``activate.bias`` has twice the conv's out channels), and the
  "noise" is the encoder feature map of the same resolution (not random), so the net is
  deterministic in eval mode;
- modulated convs demodulate (eps 1e-8); upsampling convs are a stride-2 transposed conv
  followed by a blur; ToRGB is an un-demodulated 1x1 modulated conv + bias, with the upsampled
  (FIR) skip added.

Convention: ``forward(x)`` takes RGB ``(B, 3, size, size)`` in [-1, 1] and returns the restored
RGB image ``(B, 3, size, size)``, nominally in [-1, 1] but *not clamped* (upstream's first output;
the caller maps ``y * 0.5 + 0.5`` and clips).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "FullGenerator",
    "StyleGenerator",
    "fused_leaky_relu",
    "gpen_bfr_256",
    "gpen_bfr_512",
    "make_kernel",
    "upfirdn2d",
]

_BLUR = (1, 3, 3, 1)


# --------------------------------------------------------------------------------------
# functional core
# --------------------------------------------------------------------------------------


def make_kernel(k: tuple[float, ...] = _BLUR) -> torch.Tensor:
    """2-D FIR kernel: outer product of ``k`` with itself, normalised to sum 1."""
    t = torch.tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter (true convolution) and downsample, per channel.

    Same function as StyleGAN2's ``upfirdn2d`` with equal x/y factors and pads; negative
    pads crop. Plain torch ops, so it runs on any device and dtype.
    """
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    p0, p1 = pad
    if p0 or p1:
        x = F.pad(x, [p0, p1, p0, p1])
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, stride=down, groups=c)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2, scale: float = math.sqrt(2)
) -> torch.Tensor:
    """``scale * leaky_relu(x + bias)`` with ``bias`` broadcast over dim 1."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return scale * F.leaky_relu(x + bias.view(shape), negative_slope=negative_slope)


# --------------------------------------------------------------------------------------
# layers (names follow upstream so state_dict keys match)
# --------------------------------------------------------------------------------------


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = math.sqrt(2)):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class Blur(nn.Module):
    """FIR filter with fixed padding; ``kernel`` is a persistent buffer (it is in the checkpoints)."""

    def __init__(self, kernel: tuple[float, ...], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * (upsample_factor**2))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """x2 FIR upsampling (used on the ToRGB skip path)."""

    def __init__(self, kernel: tuple[float, ...], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * (factor**2))
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(cin * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv; weight stored ``(1, out, in, k, k)``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: tuple[float, ...] = _BLUR,
    ):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = cin, cout, kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(cin * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, cin, h, w = x.shape
        k, cout = self.kernel_size, self.out_channel
        s = self.modulation(style).view(b, 1, cin, 1, 1)
        weight = self.scale * self.weight * s  # (b, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, cout, 1, 1, 1)
        x = x.reshape(1, b * cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * cin, cout, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = self.blur(out.view(b, cout, out.shape[2], out.shape[3]))
        else:
            out = F.conv2d(x, weight.reshape(b * cout, cin, k, k), padding=self.padding, groups=b)
            out = out.view(b, cout, out.shape[2], out.shape[3])
        return out


class NoiseInjection(nn.Module):
    """Concatenates ``weight * noise`` as extra channels (GPEN's ``isconcat=True``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.weight * noise), dim=1)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, kernel_size, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout * 2)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, cin: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample(_BLUR)
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def _channels(channel_multiplier: int, narrow: float) -> dict[int, int]:
    base = {4: 512, 8: 512, 16: 512, 32: 512}
    mult = {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16, 2048: 8}
    ch = {r: int(c * narrow) for r, c in base.items()}
    ch.update({r: int(c * channel_multiplier * narrow) for r, c in mult.items()})
    return ch


class StyleGenerator(nn.Module):
    """GPEN's StyleGAN2 synthesis net with concatenated noise (upstream ``Generator``).

    ``forward(code, noises)`` maps the code through the mapping MLP to W (the same W for every
    layer) and synthesises with ``noises`` = the per-layer noise maps (``2 * log2(size) - 3`` of
    them, coarse to fine, channels equal to each conv's out channels).
    """

    def __init__(self, size: int, style_dim: int, n_mlp: int, channel_multiplier: int = 2, narrow: float = 1.0, lr_mlp: float = 0.01):
        super().__init__()
        self.size = size
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        )
        ch = _channels(channel_multiplier, narrow)
        self.channels = ch
        self.log_size = int(math.log2(size))
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim)
        self.to_rgb1 = ToRGB(ch[4] * 2, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        cin = ch[4]
        for i in range(3, self.log_size + 1):
            cout = ch[2**i]
            self.convs.append(StyledConv(cin * 2, cout, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(cout * 2, cout, 3, style_dim))
            self.to_rgbs.append(ToRGB(cout * 2, style_dim))
            cin = cout

    def forward(self, code: torch.Tensor, noises: list[torch.Tensor]) -> torch.Tensor:
        n_expected = 2 * self.log_size - 3
        if len(noises) != n_expected:
            raise ValueError(f"expected {n_expected} noise maps, got {len(noises)}")
        w = self.style(code)
        out = self.conv1(self.input(code.shape[0]), w, noises[0])
        skip = self.to_rgb1(out, w)
        for j, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * j](out, w, noises[1 + 2 * j])
            out = self.convs[2 * j + 1](out, w, noises[2 + 2 * j])
            skip = to_rgb(out, w, skip)
        return skip


class ConvLayer(nn.Sequential):
    """Equalised conv + fused leaky ReLU, optionally preceded by a blur and strided (keys ``0/1/2``)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, downsample: bool = False, blur_kernel: tuple[float, ...] = _BLUR):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False))
        layers.append(FusedLeakyReLU(cout))
        super().__init__(*layers)


class FullGenerator(nn.Module):
    """GPEN ``FullGenerator``: encoder -> code + multi-scale features -> StyleGAN2 decoder.

    Shape:
        - input: :math:`(B, 3, \\text{size}, \\text{size})`, RGB in [-1, 1]
        - output: :math:`(B, 3, \\text{size}, \\text{size})`, RGB nominally in [-1, 1], unclamped
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2, narrow: float = 1.0):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size = size
        ch = _channels(channel_multiplier, narrow)
        self.log_size = int(math.log2(size))
        self.generator = StyleGenerator(size, style_dim, n_mlp, channel_multiplier, narrow)
        self.ecd0 = nn.Sequential(ConvLayer(3, ch[size], 1))
        cin = ch[size]
        for i in range(self.log_size, 2, -1):
            cout = ch[2 ** (i - 1)]
            self.add_module(f"ecd{self.log_size - i + 1}", nn.Sequential(ConvLayer(cin, cout, 3, downsample=True)))
            cin = cout
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 4 * 4, style_dim, activation=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != self.size or x.shape[3] != self.size:
            raise ValueError(f"FullGenerator({self.size}) expects (B, 3, {self.size}, {self.size}), got {tuple(x.shape)}")
        feats = []
        for i in range(self.log_size - 1):
            x = getattr(self, f"ecd{i}")(x)
            feats.append(x)
        code = self.final_linear(x.flatten(1))
        # upstream: each feature map twice, reversed (coarse first), minus the first 4x4 copy
        coarse_to_fine = feats[::-1]
        noises = [coarse_to_fine[0]] + [f for f in coarse_to_fine[1:] for _ in range(2)]
        return self.generator(code, noises)


def gpen_bfr_256() -> FullGenerator:
    """GPEN-BFR-256: size 256, style 512, n_mlp 8, channel_multiplier 1, narrow 0.5."""
    return FullGenerator(256, 512, 8, channel_multiplier=1, narrow=0.5)


def gpen_bfr_512() -> FullGenerator:
    """GPEN-BFR-512: size 512, style 512, n_mlp 8, channel_multiplier 2, narrow 1."""
    return FullGenerator(512, 512, 8, channel_multiplier=2, narrow=1.0)
