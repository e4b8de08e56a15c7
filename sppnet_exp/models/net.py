"""SPPNet: conv trunk + (SPP or no-SPP 6x6) pool + fc6/fc7 + fc8, and the model registry (``build_model``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from sppnet_exp.models.backbones import BACKBONES, build_features, get_spec
from sppnet_exp.models.layers import fc_block, out_size, scale_width
from sppnet_exp.models.spp import SpatialPyramidPooling

__all__ = ["HEADS", "INITS", "NoSPPPool", "SPPNet", "build_model", "list_models"]

HEADS = ("spp", "nospp")
INITS = ("kaiming", "caffe")


class NoSPPPool(nn.Module):
    """Baselines' pool5: one 6x6 level with the authors' bin rule, accepting only the training map size.

    At 224 this equals each net's conventional pool5 (3x3 s2 on 13x13, 3x3 s3 on 18x18). fc6 is tied to the
    training size, so any other conv5 map raises ``ValueError``.
    """

    def __init__(self, map_size: tuple[int, int], input_size: int, bins: int = 6, mode: str = "max") -> None:
        super().__init__()
        self.map_size, self.input_size, self.bins = tuple(map_size), input_size, bins
        self.spp = SpatialPyramidPooling((bins,), mode=mode)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.map_size:
            raise ValueError(
                f"no-SPP models only accept {self.input_size}x{self.input_size} inputs (conv map "
                f"{self.map_size[0]}x{self.map_size[1]}), got a {x.shape[-2]}x{x.shape[-1]} conv map; "
                "use head=spp for other sizes and full-image views"
            )
        return self.spp(x)

    def output_dim(self, channels: int) -> int:
        """Length of the pooled vector for ``channels`` channels."""
        return self.spp.output_dim(channels)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, map_size={self.map_size}, input_size={self.input_size}"


class SPPNet(nn.Module):
    """Classifier: ``features`` (conv trunk) -> ``pool`` -> ``fc`` (fc6, fc7) -> ``classifier`` (fc8).

    Attributes: ``name``, ``head`` ("spp"/"nospp"), ``levels`` (pyramid levels; ``(6,)`` for no-SPP),
    ``feature_stride``, ``out_channels`` (conv5 channels), ``input_size`` (training size).
    """

    def __init__(
        self,
        name: str,
        head: str = "spp",
        levels: Sequence[int] = (6, 3, 2, 1),
        num_classes: int = 1000,
        width: float = 1.0,
        input_size: int | None = None,
        dropout: float = 0.5,
        pool: str = "max",
        spp_impl: str = "adaptive",
        init: str = "kaiming",
        batch_norm: bool = False,
        lrn: bool = True,
    ) -> None:
        super().__init__()
        spec = get_spec(name)
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.name, self.head = name, head
        self.input_size = int(input_size or spec.input_size)
        self.batch_norm = bool(batch_norm)
        self.lrn = bool(lrn)
        self.features, self.out_channels = build_features(spec, width, batch_norm=self.batch_norm, lrn=self.lrn)
        self.feature_stride = spec.feature_stride
        if head == "spp":
            self.pool: nn.Module = SpatialPyramidPooling(levels, mode=pool, impl=spp_impl)
            self.levels = tuple(self.pool.levels)
        else:
            map_size = self.feature_map_size(self.input_size, self.input_size)
            self.pool = NoSPPPool(map_size, self.input_size, mode=pool)
            self.levels = (6,)
        fc_width = scale_width(4096, width)
        self.fc = fc_block(self.pool.output_dim(self.out_channels), fc_width, dropout)
        self.classifier = nn.Linear(fc_width, num_classes)
        self.reset_parameters(init)

    def reset_parameters(self, init: str = "kaiming") -> None:
        """Initialise weights.

        ``kaiming`` (default): convs He-normal (fan_out, ReLU), fc6/fc7 He-normal (fan_in), fc8 N(0, 0.01),
        biases 0 (the small N(0, 0.005) fc init of Caffe's AlexNet left short CPU runs on a loss plateau).
        ``caffe``: the released prototxt, N(0, 0.01) everywhere, biases 0 for conv1/conv3 and 1 elsewhere; it
        needs many epochs to start learning from scratch, hence not the default.
        """
        convs = [(n, m) for n, m in self.features.named_children() if isinstance(m, nn.Conv2d)]
        linears = [("fc6", self.fc.fc6), ("fc7", self.fc.fc7), ("fc8", self.classifier)]
        for layer_name, module in convs + linears:
            if init == "caffe":
                nn.init.normal_(module.weight, 0.0, 0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0 if layer_name in ("conv1", "conv3") else 1.0)
                continue
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif layer_name in ("fc6", "fc7"):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            else:
                nn.init.normal_(module.weight, 0.0, 0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        for module in self.features.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # weight 1, bias 0, running statistics cleared

    def feature_map_size(self, h: int, w: int) -> tuple[int, int]:
        """Conv5 (last conv) map size for an h x w input, from the conv/pool geometry of ``features``."""
        size = [h, w]
        for layer_name, module in self.features.named_children():
            if isinstance(module, nn.Conv2d | nn.MaxPool2d):
                conv = isinstance(module, nn.Conv2d)
                for d in range(2):
                    size[d] = out_size(
                        size[d],
                        _pair(module.kernel_size)[d],
                        _pair(module.stride)[d],
                        _pair(module.padding)[d],
                        ceil=False if conv else module.ceil_mode,
                        dilation=_pair(module.dilation)[d],
                    )
                if min(size) < 1:
                    raise ValueError(f"{self.name}: a {h}x{w} input is too small (empty map after {layer_name})")
        return size[0], size[1]

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled + fc7 features (the input of fc8)."""
        return self.fc(self.pool(self.features(x)).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, N x num_classes."""
        return self.classifier(self.forward_features(x))


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(BACKBONES)


def build_model(
    name: str,
    head: str = "spp",
    levels: Sequence[int] = (6, 3, 2, 1),
    num_classes: int = 1000,
    width: float = 1.0,
    input_size: int | None = None,
    dropout: float = 0.5,
    pool: str = "max",
    spp_impl: str = "adaptive",
    init: str = "kaiming",
    batch_norm: bool = False,
    lrn: bool = True,
) -> SPPNet:
    """Build a registered network (see :func:`list_models`); ``input_size`` defaults to 224 (alexnet 227).

    ``dropout`` is the rate after fc6 and fc7 (the paper's 0.5); ``batch_norm`` adds BN between every conv and
    its ReLU (not in the paper; the embedded recipe's option, :func:`~sppnet_exp.models.backbones.build_features`);
    ``lrn=False`` leaves the LRN layers out (the embedded recipe, where they are inert).
    """
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a positive number, got {width}")
    return SPPNet(name, head, levels, num_classes, width, input_size, dropout, pool, spp_impl, init, batch_norm, lrn)
