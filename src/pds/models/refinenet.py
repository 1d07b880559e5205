"""The RefineNet score networks of NCSN (v1) and NCSNv2, state-dict compatible with the official code.

* :class:`CondRefineNetDilated` — NCSN v1 (Song & Ermon 2019, ermongroup/ncsn): every normalisation is a
  *conditional* InstanceNorm++ whose scale and shift come from an embedding of the noise-level index;
  the output is not divided by σ.
* :class:`NCSNv2` and :class:`NCSNv2Deeper` — NCSNv2 (Song & Ermon 2020, ermongroup/ncsnv2):
  unconditional InstanceNorm++, output divided by σ of the level.

Both are RefineNets: residual blocks going down (mean-pool or dilated convolutions), refine blocks
(residual conv units, multi-resolution fusion, chained residual pooling) coming up. The networks map
x ∈ [0, 1] to 2x − 1 themselves; ``labels`` index the noise levels (0 = largest σ). Written here from
the architecture; module and parameter names follow the official checkpoints so that their state
dicts load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NCSNv2", "NCSNv2Deeper", "CondRefineNetDilated", "InstanceNorm2dPlus", "ConditionalInstanceNorm2dPlus"]


def _standardised_means(x):
    means = x.mean(dim=(2, 3))
    m = means.mean(dim=-1, keepdim=True)
    v = means.var(dim=-1, keepdim=True)
    return (means - m) / torch.sqrt(v + 1e-5)


class InstanceNorm2dPlus(nn.Module):
    """Instance norm that keeps the channel means' spread: γ·(IN(x) + α·m̃) + β, m̃ the standardised means."""

    def __init__(self, num_features: int):
        super().__init__()
        self.instance_norm = nn.InstanceNorm2d(num_features, affine=False, track_running_stats=False)
        self.alpha = nn.Parameter(torch.ones(num_features))
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x, y=None):
        h = self.instance_norm(x) + _standardised_means(x)[..., None, None] * self.alpha[..., None, None]
        return self.gamma.view(1, -1, 1, 1) * h + self.beta.view(1, -1, 1, 1)


class ConditionalInstanceNorm2dPlus(nn.Module):
    """InstanceNorm++ whose (γ, α, β) are rows of an embedding of the noise-level index (NCSN v1)."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.instance_norm = nn.InstanceNorm2d(num_features, affine=False, track_running_stats=False)
        self.embed = nn.Embedding(num_classes, 3 * num_features)

    def forward(self, x, y):
        gamma, alpha, beta = self.embed(y).chunk(3, dim=-1)
        h = self.instance_norm(x) + _standardised_means(x)[..., None, None] * alpha[..., None, None]
        return gamma[..., None, None] * h + beta[..., None, None]


def conv3x3(cin: int, cout: int, bias: bool = True, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=1, padding=dilation, dilation=dilation, bias=bias)


class ConvMeanPool(nn.Module):
    """Convolution, then 2×2 mean pooling (as the sum of the four strided sub-grids / 4)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, adjust_padding: bool = False):
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel_size, stride=1, padding=kernel_size // 2, bias=True)
        self.conv = nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), conv) if adjust_padding else conv

    def forward(self, x):
        out = self.conv(x)
        return (out[:, :, ::2, ::2] + out[:, :, 1::2, ::2] + out[:, :, ::2, 1::2] + out[:, :, 1::2, 1::2]) / 4.0


class ResidualBlock(nn.Module):
    """norm → act → conv → norm → act → conv, plus a shortcut; ``norm(features)`` builds the norms."""

    def __init__(self, cin: int, cout: int, resample: str | None, act: nn.Module, norm, adjust_padding: bool = False,
                 dilation: int = 1):
        super().__init__()
        self.act, self.cin, self.cout, self.resample = act, cin, cout, resample
        if resample == "down":
            self.conv1 = conv3x3(cin, cin, dilation=dilation)
            self.normalize2 = norm(cin)
            if dilation > 1:
                self.conv2 = conv3x3(cin, cout, dilation=dilation)
                self.shortcut = conv3x3(cin, cout, dilation=dilation)
            else:
                self.conv2 = ConvMeanPool(cin, cout, 3, adjust_padding=adjust_padding)
                self.shortcut = ConvMeanPool(cin, cout, 1, adjust_padding=adjust_padding)
        elif resample is None:
            self.conv1 = conv3x3(cin, cout, dilation=dilation)
            self.normalize2 = norm(cout)
            self.conv2 = conv3x3(cout, cout, dilation=dilation)
            if cin != cout:
                self.shortcut = (conv3x3(cin, cout, dilation=dilation) if dilation > 1
                                 else nn.Conv2d(cin, cout, 1))
        else:
            raise ValueError(f"resample must be 'down' or None, got {resample!r}")
        self.normalize1 = norm(cin)

    def forward(self, x, y=None):
        out = self.conv1(self.act(self.normalize1(x, y)))
        out = self.conv2(self.act(self.normalize2(out, y)))
        skip = x if (self.cin == self.cout and self.resample is None) else self.shortcut(x)
        return skip + out


class RCUBlock(nn.Module):
    """Residual conv units: n_blocks × (n_stages × ([norm], act, conv)) with a skip around each block."""

    def __init__(self, features: int, n_blocks: int, n_stages: int, act: nn.Module, norm=None):
        super().__init__()
        self.n_blocks, self.n_stages, self.act, self.conditional = n_blocks, n_stages, act, norm is not None
        for i in range(n_blocks):
            for j in range(n_stages):
                if norm is not None:
                    self.add_module(f"{i + 1}_{j + 1}_norm", norm(features))
                self.add_module(f"{i + 1}_{j + 1}_conv", conv3x3(features, features, bias=False))

    def forward(self, x, y=None):
        for i in range(self.n_blocks):
            residual = x
            for j in range(self.n_stages):
                if self.conditional:
                    x = getattr(self, f"{i + 1}_{j + 1}_norm")(x, y)
                x = getattr(self, f"{i + 1}_{j + 1}_conv")(self.act(x))
            x = x + residual
        return x


class CRPBlock(nn.Module):
    """Chained residual pooling: act, then n_stages × ([norm], 5×5 pool, conv) accumulated onto x.

    NCSNv2 pools with max, the conditional NCSN v1 block with the mean.
    """

    def __init__(self, features: int, n_stages: int, act: nn.Module, norm=None):
        super().__init__()
        self.convs = nn.ModuleList([conv3x3(features, features, bias=False) for _ in range(n_stages)])
        if norm is not None:
            self.norms = nn.ModuleList([norm(features) for _ in range(n_stages)])
            self.pool = nn.AvgPool2d(kernel_size=5, stride=1, padding=2)
        else:
            self.norms = None
            self.pool = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)
        self.act = act

    def forward(self, x, y=None):
        x = self.act(x)
        path = x
        for i, conv in enumerate(self.convs):
            if self.norms is not None:
                path = self.norms[i](path, y)
            path = conv(self.pool(path))
            x = path + x
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: ([norm], conv) each input, resize bilinearly (align_corners), sum."""

    def __init__(self, in_planes, features: int, norm=None):
        super().__init__()
        self.features = features
        self.convs = nn.ModuleList([conv3x3(c, features) for c in in_planes])
        self.norms = None if norm is None else nn.ModuleList([norm(c) for c in in_planes])

    def forward(self, xs, shape, y=None):
        total = torch.zeros(xs[0].shape[0], self.features, *shape, device=xs[0].device, dtype=xs[0].dtype)
        for i, (conv, x) in enumerate(zip(self.convs, xs, strict=True)):
            if self.norms is not None:
                x = self.norms[i](x, y)
            total = total + F.interpolate(conv(x), size=shape, mode="bilinear", align_corners=True)
        return total


class RefineBlock(nn.Module):
    def __init__(self, in_planes, features: int, act: nn.Module, start: bool = False, end: bool = False,
                 norm=None):
        super().__init__()
        self.n_blocks = len(in_planes)
        self.adapt_convs = nn.ModuleList([RCUBlock(c, 2, 2, act, norm) for c in in_planes])
        self.output_convs = RCUBlock(features, 3 if end else 1, 2, act, norm)
        if not start:
            self.msf = MSFBlock(in_planes, features, norm)
        self.crp = CRPBlock(features, 2, act, norm)

    def forward(self, xs, shape, y=None):
        hs = [adapt(x, y) for adapt, x in zip(self.adapt_convs, xs, strict=True)]
        h = self.msf(hs, shape, y) if self.n_blocks > 1 else hs[0]
        return self.output_convs(self.crp(h, y), y)


def _run(stages, h, y=None):
    """Apply the residual stages in turn; return the output of each."""
    outs = []
    for stage in stages:
        for block in stage:
            h = block(h, y)
        outs.append(h)
    return outs


def _pair(cin, cout, act, norm, dilation=1, adjust_padding=False):
    return nn.ModuleList([
        ResidualBlock(cin, cout, "down", act, norm, adjust_padding=adjust_padding, dilation=dilation),
        ResidualBlock(cout, cout, None, act, norm, dilation=dilation),
    ])


class _Stem(nn.Module):
    """What every RefineNet here starts with, registered in the official order: [sigmas], begin_conv,
    normalizer, end_conv, res1 (two plain blocks), res2 (down to 2·ngf)."""

    def __init__(self, ngf: int, channels: int, norm, sigmas=None):
        super().__init__()
        self.act = act = nn.ELU()
        if sigmas is not None:
            self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32))
        self.begin_conv = nn.Conv2d(channels, ngf, 3, stride=1, padding=1)
        self.normalizer = norm(ngf)
        self.end_conv = nn.Conv2d(ngf, channels, 3, stride=1, padding=1)
        self.res1 = nn.ModuleList([ResidualBlock(ngf, ngf, None, act, norm), ResidualBlock(ngf, ngf, None, act, norm)])
        self.res2 = _pair(ngf, 2 * ngf, act, norm)


class _RefineNet4(_Stem):
    """The four-stage RefineNet shared by NCSN v1 (conditional norms) and NCSNv2."""

    def __init__(self, ngf: int, channels: int, image_size: int, norm, refine_norm, sigmas=None):
        super().__init__(ngf, channels, norm, sigmas)
        act = self.act
        self.res3 = _pair(2 * ngf, 2 * ngf, act, norm, dilation=2)
        self.res4 = _pair(2 * ngf, 2 * ngf, act, norm, dilation=4, adjust_padding=image_size == 28)
        self.refine1 = RefineBlock([2 * ngf], 2 * ngf, act, start=True, norm=refine_norm)
        self.refine2 = RefineBlock([2 * ngf, 2 * ngf], 2 * ngf, act, norm=refine_norm)
        self.refine3 = RefineBlock([2 * ngf, 2 * ngf], ngf, act, norm=refine_norm)
        self.refine4 = RefineBlock([ngf, ngf], ngf, act, end=True, norm=refine_norm)

    def _features(self, x, y=None):
        l1, l2, l3, l4 = _run((self.res1, self.res2, self.res3, self.res4), self.begin_conv(2.0 * x - 1.0), y)
        r = self.refine1([l4], l4.shape[2:], y)
        r = self.refine2([l3, r], l3.shape[2:], y)
        r = self.refine3([l2, r], l2.shape[2:], y)
        r = self.refine4([l1, r], l1.shape[2:], y)
        return self.end_conv(self.act(self.normalizer(r, y)))


class CondRefineNetDilated(_RefineNet4):
    """NCSN v1 score network. ``forward(x, labels)``: the output is the score (not divided by σ)."""

    def __init__(self, ngf: int = 64, channels: int = 1, num_classes: int = 10, image_size: int = 28):
        def norm(c):
            return ConditionalInstanceNorm2dPlus(c, num_classes)

        super().__init__(ngf, channels, image_size, norm, norm)

    def forward(self, x, labels):
        return self._features(x, labels)


class NCSNv2(_RefineNet4):
    """NCSNv2 (CIFAR-10 / CelebA configurations). ``forward(x, labels)``, labels index ``sigmas``."""

    def __init__(self, ngf: int = 128, channels: int = 3, sigmas=(1.0,), image_size: int = 32):
        super().__init__(ngf, channels, image_size, InstanceNorm2dPlus, None, sigmas=sigmas)

    def forward(self, x, labels):
        return self._features(x) / self.sigmas[labels].view(-1, 1, 1, 1)


class NCSNv2Deeper(_Stem):
    """NCSNv2Deeper (the LSUN configurations). ``forward(x, labels)``, labels index ``sigmas``."""

    def __init__(self, ngf: int = 128, channels: int = 3, sigmas=(1.0,), image_size: int = 64):
        norm = InstanceNorm2dPlus
        super().__init__(ngf, channels, norm, sigmas)
        act = self.act
        self.res3 = _pair(2 * ngf, 2 * ngf, act, norm)
        self.res4 = _pair(2 * ngf, 4 * ngf, act, norm, dilation=2)
        self.res5 = _pair(4 * ngf, 4 * ngf, act, norm, dilation=4)
        self.refine1 = RefineBlock([4 * ngf], 4 * ngf, act, start=True)
        self.refine2 = RefineBlock([4 * ngf, 4 * ngf], 2 * ngf, act)
        self.refine3 = RefineBlock([2 * ngf, 2 * ngf], 2 * ngf, act)
        self.refine4 = RefineBlock([2 * ngf, 2 * ngf], ngf, act)
        self.refine5 = RefineBlock([ngf, ngf], ngf, act, end=True)

    def forward(self, x, labels):
        stages = (self.res1, self.res2, self.res3, self.res4, self.res5)
        l1, l2, l3, l4, l5 = _run(stages, self.begin_conv(2.0 * x - 1.0))
        r = self.refine1([l5], l5.shape[2:])
        r = self.refine2([l4, r], l4.shape[2:])
        r = self.refine3([l3, r], l3.shape[2:])
        r = self.refine4([l2, r], l2.shape[2:])
        r = self.refine5([l1, r], l1.shape[2:])
        out = self.end_conv(self.act(self.normalizer(r)))
        return out / self.sigmas[labels].view(-1, 1, 1, 1)
