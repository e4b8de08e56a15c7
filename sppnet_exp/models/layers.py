"""Small building blocks: within-channel LRN, layer specs, output-size arithmetic and width scaling."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Conv",
    "Float32LRN",
    "Norm",
    "Pool",
    "WithinChannelLRN",
    "make_norm",
    "out_size",
    "scale_channels",
    "scale_width",
]


class WithinChannelLRN(nn.Module):
    """Caffe ``LRN`` with ``norm_region: WITHIN_CHANNEL`` (authors' ZF-5): a spatial, per-channel normaliser.

    ``y = x / (1 + alpha * mean_{size x size window}(x^2)) ** beta``; the window is zero-padded and the mean
    always divides by ``size^2`` (Caffe's alpha/size^2 with a clipped sum). ``nn.LocalResponseNorm`` is across
    channels, which is a different operation.
    """

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"WithinChannelLRN size must be odd and positive, got {size}")
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: Tensor) -> Tensor:
        # In float32 even under bf16/fp16 autocast: with alpha = 5e-5, 1 + alpha * mean(x^2) rounds to 1 in
        # bfloat16 (8-bit mantissa) for most activations, which would turn the normaliser off.
        xf = _at_least_float32(x)
        mean_sq = F.avg_pool2d(xf * xf, self.size, stride=1, padding=self.size // 2, count_include_pad=True)
        return (xf / (1.0 + self.alpha * mean_sq).pow(self.beta)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}"


class Float32LRN(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` (across channels) computed in float32 under bf16/fp16 autocast, for the same
    reason as :class:`WithinChannelLRN`: ``k + alpha * sum(x^2) / n`` loses the small term in bfloat16."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_at_least_float32(x)).to(x.dtype)


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@dataclass(frozen=True)
class Conv:
    """A conv layer (always followed by a ReLU named ``relu<i>``); ``out`` is the width-1.0 channel count."""

    name: str
    out: int
    k: int
    s: int = 1
    p: int = 0
    groups: int = 1


@dataclass(frozen=True)
class Pool:
    """A max-pooling layer; ``ceil`` selects Caffe/cuda-convnet's ceil output rule."""

    name: str
    k: int
    s: int
    ceil: bool = False


@dataclass(frozen=True)
class Norm:
    """A local response normalisation: ``within`` (authors' ZF-5), ``krizhevsky`` (k=2) or ``caffe`` (k=1)."""

    name: str
    kind: str


def make_norm(kind: str) -> nn.Module:
    """The LRN module for a :class:`Norm` kind."""
    if kind == "within":
        return WithinChannelLRN(3, alpha=5e-5, beta=0.75)
    if kind == "krizhevsky":
        return Float32LRN(5, alpha=1e-4, beta=0.75, k=2.0)
    if kind == "caffe":
        return Float32LRN(5, alpha=1e-4, beta=0.75, k=1.0)
    raise ValueError(f"unknown LRN kind {kind!r}; expected within, krizhevsky or caffe")


def out_size(a: int, k: int, s: int, p: int = 0, ceil: bool = False, dilation: int = 1) -> int:
    """Output length of a conv/pool on ``a`` cells (PyTorch rules, incl. ceil mode's last-window check)."""
    eff = dilation * (k - 1) + 1
    span = a + 2 * p - eff
    if span < 0:
        return 0
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= a + p:  # the last window may not start in the right padding
        out -= 1
    return out


def scale_channels(c: int, width: float, multiple: int = 8) -> int:
    """Scale a channel count by ``width``, rounded to a multiple of ``multiple`` (at least ``multiple``)."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(multiple, int(round(c * width / multiple)) * multiple)


def scale_width(n: int, width: float) -> int:
    """Scale an fc width (e.g. 4096) by ``width``, rounded to an int (at least 1)."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(1, int(round(n * width)))


def fc_block(in_dim: int, width: int, dropout: float = 0.5) -> nn.Sequential:
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout (Table 1's fully connected layers; the prototxts' names)."""
    from collections import OrderedDict

    return nn.Sequential(
        OrderedDict(
            fc6=nn.Linear(in_dim, width),
            relu6=nn.ReLU(inplace=True),
            drop6=nn.Dropout(dropout),
            fc7=nn.Linear(width, width),
            relu7=nn.ReLU(inplace=True),
            drop7=nn.Dropout(dropout),
        )
    )
