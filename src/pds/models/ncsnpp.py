"""NCSN++ (Song et al. 2021, score_sde) for the continuous VE checkpoints, state-dict compatible.

Covers what the four official VE configurations use (CIFAR-10, CIFAR-10 deep, LSUN bedroom/church
256, FFHQ 1024): Gaussian Fourier embedding of log σ, BigGAN residual blocks with FIR [1, 3, 3, 1]
up/down-sampling, self-attention at 16², skip rescaling, progressive input ('input_skip' or
'residual') and progressive output ('output_skip' or none), GroupNorm (≤ 32 groups), swish.

Why written here and not taken from diffusers: diffusers' ``UNet2DModel`` implements NCSN++ for the
hub's converted 256²/1024² models, but its parameter names differ from the score_sde checkpoints
(it needs their converter script), and the CIFAR-10 configuration (progressive_input='residual'
without output skip) must load and match as well. This module keeps score_sde's flat
``all_modules`` list, so official state dicts load strictly, and follows its operation order
(in particular the Fourier phase log σ · W · 2 · π in float32).

``forward(x, sigma)``: x in [0, 1] (mapped to 2x − 1 inside), σ a number or one per sample; the output is
divided by σ (the score).

Speed, without custom CUDA ops: FIR resampling in polyphase form (depthwise strided convolutions instead of
zero insertion), attention through ``F.scaled_dot_product_attention``, 1×1 layers as convolutions; score_sde's
formulations stay available (:meth:`NCSNpp.use_reference_ops`) and the tests check that both agree. Opt-ins:
``net.to(memory_format=torch.channels_last)`` (faster convolutions on CPUs) and :meth:`NCSNpp.compile`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pds.schedules import geometric_sigmas, sigma_per_sample

__all__ = ["NCSNppConfig", "NCSNpp", "upfirdn2d", "fir_upsample", "fir_downsample", "fir_filter", "OFFICIAL_CONFIGS"]


@dataclass
class NCSNppConfig:
    nf: int = 128
    ch_mult: tuple = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple = (16,)
    image_size: int = 32
    channels: int = 3
    progressive: str = "none"  # 'none' | 'output_skip'
    progressive_input: str = "residual"  # 'none' | 'input_skip' | 'residual'
    progressive_combine: str = "sum"
    fir_kernel: tuple = (1, 3, 3, 1)
    skip_rescale: bool = True
    fourier_scale: float = 16.0
    num_scales: int = 1000
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    centered: bool = False
    extra: dict = field(default_factory=dict)


OFFICIAL_CONFIGS = {
    "cifar10": NCSNppConfig(),
    "cifar10_deep": NCSNppConfig(num_res_blocks=8),
    "bedroom": NCSNppConfig(ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, image_size=256, progressive="output_skip",
                            progressive_input="input_skip", num_scales=2000, sigma_max=378.0),
    "church": NCSNppConfig(ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, image_size=256, progressive="output_skip",
                           progressive_input="input_skip", num_scales=2000, sigma_max=380.0),
    "ffhq_1024": NCSNppConfig(nf=16, ch_mult=(1, 2, 4, 8, 16, 32, 32, 32), num_res_blocks=1, image_size=1024,
                              progressive="output_skip", progressive_input="input_skip", num_scales=2000,
                              sigma_max=1348.0),
}


# -- FIR resampling ----------------------------------------------------------------------------
# StyleGAN2's upfirdn2d (zero insertion, pad, convolve, subsample) is kept as the reference; the network uses
# polyphase forms that compute the same outputs without the zeros: up-sampling as a depthwise transposed
# convolution of stride 2, down-sampling as a depthwise convolution of stride 2 (``tests/test_models.py`` checks
# them against the reference in float64).
@functools.cache
def _fir_kernel(k: tuple) -> torch.Tensor:
    """The normalised 2-D FIR kernel of a 1-D tap tuple (built once per tuple; do not modify in place)."""
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    return torch.from_numpy(k / k.sum())


@functools.cache
def _fir_weight(k: tuple, gain: float, flip: bool, dtype, device) -> torch.Tensor:
    """The kernel as a [1, 1, K, K] weight on ``device`` (cached: no host-to-device copy per call)."""
    kernel = _fir_kernel(k) * gain
    kernel = torch.flip(kernel, [0, 1]) if flip else kernel
    return kernel.to(dtype=dtype, device=device)[None, None]


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (pad0, pad1) on both axes, convolve with ``kernel``, subsample (reference)."""
    n, c, h, w = x.shape
    p0, p1 = pad
    y = x.reshape(n * c, 1, h, w)
    if up > 1:
        y = F.pad(y.reshape(n * c, 1, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(n * c, 1, h * up, w * up)
    y = F.pad(y, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if min(p0, p1) < 0:
        y = y[:, :, max(-p0, 0): y.shape[2] - max(-p1, 0), max(-p0, 0): y.shape[3] - max(-p1, 0)]
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(dtype=y.dtype, device=y.device).view(1, 1, kh, kw)
    y = F.conv2d(y, weight)
    y = y[:, :, ::down, ::down]
    return y.reshape(n, c, y.shape[2], y.shape[3])


def fir_upsample_reference(x, k, factor: int = 2):
    kernel = _fir_kernel(tuple(k)) * (factor**2)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def fir_downsample_reference(x, k, factor: int = 2):
    kernel = _fir_kernel(tuple(k))
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def _check_taps(k, factor: int) -> int:
    taps = len(k)
    if (taps - factor) % 2:
        raise NotImplementedError(f"FIR kernel of {taps} taps with factor {factor}: the polyphase forms need "
                                  "an even taps − factor (the official kernel is [1, 3, 3, 1])")
    return taps


def fir_upsample(x, k, factor: int = 2):
    """score_sde's ``upsample_2d`` (FIR, gain factor²) as a depthwise transposed convolution of stride ``factor``."""
    taps = _check_taps(k, factor)
    c = x.shape[1]
    weight = _fir_weight(tuple(k), float(factor**2), False, x.dtype, x.device).expand(c, 1, taps, taps)
    pad0 = (taps - factor + 1) // 2 + factor - 1
    return F.conv_transpose2d(x, weight, stride=factor, padding=taps - 1 - pad0, groups=c)


def fir_downsample(x, k, factor: int = 2):
    """score_sde's ``downsample_2d`` (FIR) as a depthwise convolution of stride ``factor``."""
    taps = _check_taps(k, factor)
    c = x.shape[1]
    weight = _fir_weight(tuple(k), 1.0, True, x.dtype, x.device).expand(c, 1, taps, taps)
    return F.conv2d(x, weight, stride=factor, padding=(taps - factor) // 2, groups=c)


def fir_filter(x, k, pad: int):
    """The FIR kernel applied at full resolution with ``pad`` zeros on every side (depthwise convolution)."""
    c = x.shape[1]
    taps = len(k)
    weight = _fir_weight(tuple(k), 1.0, True, x.dtype, x.device).expand(c, 1, taps, taps)
    return F.conv2d(x, weight, padding=pad, groups=c)


def _up(x, k, reference: bool):
    return fir_upsample_reference(x, k) if reference else fir_upsample(x, k)


def _down(x, k, reference: bool):
    return fir_downsample_reference(x, k) if reference else fir_downsample(x, k)


class FIRDownConv(nn.Module):
    """3×3 convolution with FIR down-sampling before it (score_sde's Conv2d(down=True))."""

    def __init__(self, cin: int, cout: int, fir_kernel):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.fir_kernel = tuple(fir_kernel)
        self.reference = False

    def forward(self, x):
        p = (len(self.fir_kernel) - 2) + (self.weight.shape[-1] - 1)  # 4: symmetric padding (2, 2)
        if self.reference:
            x = upfirdn2d(x, _fir_kernel(self.fir_kernel), pad=((p + 1) // 2, p // 2))
        else:
            x = fir_filter(x, self.fir_kernel, p // 2)
        return F.conv2d(x, self.weight, stride=2, padding=0) + self.bias.reshape(1, -1, 1, 1)


class PyramidDownsample(nn.Module):
    """score_sde's layerspp.Downsample with fir=True and with_conv=True (parameters under Conv2d_0)."""

    def __init__(self, cin: int, cout: int, fir_kernel):
        super().__init__()
        self.Conv2d_0 = FIRDownConv(cin, cout, fir_kernel)

    def forward(self, x):
        return self.Conv2d_0(x)


# -- blocks ----------------------------------------------------------------------------------
def conv3x3(cin, cout, stride=1, padding=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding)


def group_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(ch // 4, 32), num_channels=ch, eps=1e-6)


class GaussianFourierProjection(nn.Module):
    def __init__(self, size: int, scale: float):
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, x):
        proj = x[:, None] * self.W[None, :] * 2 * np.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class NIN(nn.Module):
    """A 1×1 layer stored as W [in, out] and b [out] (DDPM's 'network in network')."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(cin, cout))
        self.b = nn.Parameter(torch.zeros(cout))
        self.reference = False

    def forward(self, x):
        if self.reference:
            return torch.einsum("bchw,co->bohw", x, self.W) + self.b[None, :, None, None]
        return F.conv2d(x, self.W.t()[:, :, None, None], self.b)


class AttnBlockpp(nn.Module):
    def __init__(self, ch: int, skip_rescale: bool):
        super().__init__()
        self.GroupNorm_0 = group_norm(ch)
        self.NIN_0, self.NIN_1, self.NIN_2, self.NIN_3 = NIN(ch, ch), NIN(ch, ch), NIN(ch, ch), NIN(ch, ch)
        self.skip_rescale = skip_rescale
        self.reference = False  # True: score_sde's einsum attention (tests compare the two)

    def forward(self, x):
        b, c, h, w = x.shape
        hn = self.GroupNorm_0(x)
        q, k, v = self.NIN_0(hn), self.NIN_1(hn), self.NIN_2(hn)
        if self.reference:
            att = torch.einsum("bchw,bcij->bhwij", q, k) * (int(c) ** (-0.5))
            att = F.softmax(att.reshape(b, h, w, h * w), dim=-1).reshape(b, h, w, h, w)
            out = torch.einsum("bhwij,bcij->bchw", att, v)
        else:  # the same softmax(q kᵀ / √c) v through the fused kernel, one head of width c
            q, k, v = (t.flatten(2).transpose(1, 2)[:, None] for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(b, c, h, w)
        out = self.NIN_3(out)
        return (x + out) / np.sqrt(2.0) if self.skip_rescale else x + out


class ResnetBlockBigGANpp(nn.Module):
    def __init__(self, act, cin: int, cout: int | None, temb_dim: int, up=False, down=False, fir_kernel=(1, 3, 3, 1),
                 skip_rescale=True):
        super().__init__()
        cout = cout or cin
        self.GroupNorm_0 = group_norm(cin)
        self.up, self.down, self.fir_kernel = up, down, tuple(fir_kernel)
        self.Conv_0 = conv3x3(cin, cout)
        self.Dense_0 = nn.Linear(temb_dim, cout)
        self.GroupNorm_1 = group_norm(cout)
        self.Conv_1 = conv3x3(cout, cout)
        if cin != cout or up or down:
            self.Conv_2 = nn.Conv2d(cin, cout, 1)
        self.skip_rescale, self.act, self.cin, self.cout = skip_rescale, act, cin, cout
        self.reference = False

    def forward(self, x, temb):
        h = self.act(self.GroupNorm_0(x))
        if self.up:
            h, x = _up(h, self.fir_kernel, self.reference), _up(x, self.fir_kernel, self.reference)
        elif self.down:
            h, x = _down(h, self.fir_kernel, self.reference), _down(x, self.fir_kernel, self.reference)
        h = self.Conv_0(h)
        h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.act(self.GroupNorm_1(h)))  # dropout is inactive at sampling time
        if self.cin != self.cout or self.up or self.down:
            x = self.Conv_2(x)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


class Combine(nn.Module):
    def __init__(self, dim1: int, dim2: int, method: str):
        super().__init__()
        self.Conv_0 = nn.Conv2d(dim1, dim2, 1)
        self.method = method

    def forward(self, x, y):
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


# -- the network -----------------------------------------------------------------------------
class NCSNpp(nn.Module):
    """NCSN++ (continuous VE, Fourier embedding, BigGAN blocks, FIR); see the module docstring."""

    def __init__(self, config: NCSNppConfig | None = None, **overrides):
        super().__init__()
        cfg = config or NCSNppConfig()
        if overrides:
            cfg = NCSNppConfig(**{**cfg.__dict__, **overrides})
        if cfg.progressive not in ("none", "output_skip"):
            raise ValueError(f"progressive={cfg.progressive!r} is not supported (official: none / output_skip)")
        if cfg.progressive_input not in ("none", "input_skip", "residual"):
            raise ValueError(f"progressive_input={cfg.progressive_input!r} is not supported")
        if cfg.progressive_combine not in ("sum", "cat"):
            raise ValueError(f"progressive_combine={cfg.progressive_combine!r} is not supported")
        self.config = cfg
        self.act = act = nn.SiLU()
        sig = geometric_sigmas(cfg.sigma_max, cfg.sigma_min, cfg.num_scales)
        self.register_buffer("sigmas", torch.tensor(sig))
        nf, ch_mult, n_blocks = cfg.nf, tuple(cfg.ch_mult), cfg.num_res_blocks
        self.num_resolutions = n_res = len(ch_mult)
        self.all_resolutions = [cfg.image_size // (2**i) for i in range(n_res)]
        attn = set(cfg.attn_resolutions)
        temb_dim = 4 * nf

        def block(cin, cout=None, up=False, down=False):
            return ResnetBlockBigGANpp(act, cin, cout, temb_dim, up=up, down=down, fir_kernel=cfg.fir_kernel,
                                       skip_rescale=cfg.skip_rescale)

        modules = [GaussianFourierProjection(nf, cfg.fourier_scale), nn.Linear(2 * nf, 4 * nf),
                   nn.Linear(4 * nf, 4 * nf)]
        channels = cfg.channels
        input_pyramid_ch = channels
        modules.append(conv3x3(channels, nf))
        hs_c = [nf]
        in_ch = nf
        for i_level in range(n_res):
            for _ in range(n_blocks):
                out_ch = nf * ch_mult[i_level]
                modules.append(block(in_ch, out_ch))
                in_ch = out_ch
                if self.all_resolutions[i_level] in attn:
                    modules.append(AttnBlockpp(in_ch, cfg.skip_rescale))
                hs_c.append(in_ch)
            if i_level != n_res - 1:
                modules.append(block(in_ch, down=True))
                if cfg.progressive_input == "input_skip":
                    modules.append(Combine(input_pyramid_ch, in_ch, cfg.progressive_combine))
                    if cfg.progressive_combine == "cat":
                        in_ch *= 2
                elif cfg.progressive_input == "residual":
                    modules.append(PyramidDownsample(input_pyramid_ch, in_ch, cfg.fir_kernel))
                    input_pyramid_ch = in_ch
                hs_c.append(in_ch)
        in_ch = hs_c[-1]
        modules += [block(in_ch), AttnBlockpp(in_ch, cfg.skip_rescale), block(in_ch)]
        for i_level in reversed(range(n_res)):
            for _ in range(n_blocks + 1):
                out_ch = nf * ch_mult[i_level]
                modules.append(block(in_ch + hs_c.pop(), out_ch))
                in_ch = out_ch
            if self.all_resolutions[i_level] in attn:
                modules.append(AttnBlockpp(in_ch, cfg.skip_rescale))
            if cfg.progressive == "output_skip":
                modules += [group_norm(in_ch), conv3x3(in_ch, channels)]
            if i_level != 0:
                modules.append(block(in_ch, up=True))
        if cfg.progressive != "output_skip":
            modules += [group_norm(in_ch), conv3x3(in_ch, channels)]
        self.all_modules = nn.ModuleList(modules)
        self.fir_kernel = tuple(cfg.fir_kernel)
        self._compiled = None
        self.reference = False

    def use_reference_ops(self, flag: bool = True) -> NCSNpp:
        """Run score_sde's formulations (zero-insertion FIR, einsum attention and 1×1 layers) instead of the fast
        ones: the same function, for tests and the speed benchmarks' "before" column."""
        for m in self.modules():
            if hasattr(m, "reference"):
                m.reference = bool(flag)
        return self

    def compile(self, **kwargs) -> NCSNpp:
        """Opt in to ``torch.compile`` of the network (``kwargs`` go to it, e.g. ``mode="max-autotune"``).

        The first forward at each input shape compiles (about two minutes for the 256² configuration on a GPU;
        see ``benchmarks/README.md``); σ enters as a tensor, so the many noise levels of a sampler reuse one
        compiled graph. Returns the network; ``forward`` is unchanged otherwise."""
        self._compiled = torch.compile(self._forward_tensor, **kwargs)
        return self

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        return (self._compiled or self._forward_tensor)(x, sigma_per_sample(x, sigma))

    def _forward_tensor(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        cfg, mods = self.config, self.all_modules
        it = iter(mods)
        temb = next(it)(torch.log(sigma))
        temb = next(it)(temb)
        temb = next(it)(self.act(temb))
        if not cfg.centered:
            x = 2 * x - 1.0
        input_pyramid = x if cfg.progressive_input != "none" else None
        hs = [next(it)(x)]
        attn = set(cfg.attn_resolutions)
        for i_level in range(self.num_resolutions):
            for _ in range(cfg.num_res_blocks):
                h = next(it)(hs[-1], temb)
                if h.shape[-1] in attn:
                    h = next(it)(h)
                hs.append(h)
            if i_level != self.num_resolutions - 1:
                h = next(it)(hs[-1], temb)
                if cfg.progressive_input == "input_skip":
                    input_pyramid = _down(input_pyramid, self.fir_kernel, self.reference)
                    h = next(it)(input_pyramid, h)
                elif cfg.progressive_input == "residual":
                    input_pyramid = next(it)(input_pyramid)
                    input_pyramid = (input_pyramid + h) / np.sqrt(2.0) if cfg.skip_rescale else input_pyramid + h
                    h = input_pyramid
                hs.append(h)
        h = hs[-1]
        h = next(it)(h, temb)
        h = next(it)(h)
        h = next(it)(h, temb)
        pyramid = None
        for i_level in reversed(range(self.num_resolutions)):
            for _ in range(cfg.num_res_blocks + 1):
                h = next(it)(torch.cat([h, hs.pop()], dim=1), temb)
            if h.shape[-1] in attn:
                h = next(it)(h)
            if cfg.progressive == "output_skip":
                pyramid_h = next(it)(h)  # GroupNorm
                pyramid_h = next(it)(self.act(pyramid_h))  # conv3x3
                pyramid = pyramid_h if pyramid is None else _up(pyramid, self.fir_kernel, self.reference) + pyramid_h
            if i_level != 0:
                h = next(it)(h, temb)
        if cfg.progressive == "output_skip":
            h = pyramid
        else:
            h = next(it)(h)
            h = next(it)(self.act(h))
        if next(it, None) is not None:
            raise RuntimeError("internal error: not every module of NCSN++ was used")
        return h / sigma.reshape(-1, 1, 1, 1)
