"""Conv trunks (conv1 .. conv5/conv7) of the paper's Table 1 networks and R-CNN's AlexNet, as layer specs.

Every spec is a list of :class:`Conv` / :class:`Pool` / :class:`Norm`; each conv is followed by a ReLU. The same
specs drive :func:`build_features` (the ``nn.Sequential``), :func:`stage_sizes` and the analytic complexity.

* ``zf5``: the authors' released Caffe ZF-5 (``Zeiler_conv5.prototxt``): conv1 7x7 s2 p1, within-channel LRN,
  3x3 s2 ceil-mode pools, conv2 5x5 s2 **p0**. Sizes at 224: conv1 110 -> pool1 55, conv2 26 -> pool2 13.
* ``convnet5``: Krizhevsky's net with the pools after conv2 and conv3 (Convnet*-5), across-channel LRN (k=2).
* ``overfeat5`` / ``overfeat7``: Overfeat "fast" style, pool 3 s3 and 2 s2, 512-channel conv3+; feature stride 12.
  The LRN is the within-channel one of the authors' ZF-5 (their nets come from the same cuda-convnet code).
* ``alexnet``: Caffe's reference net as used by R-CNN (227 input, grouped conv2/4/5, pool-then-LRN, k=1).

Paddings not stated in Table 1 are chosen so that the map sizes match it ("the padding is adjusted").
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from sppnet_exp.models.layers import Conv, Norm, Pool, make_norm, out_size, scale_channels

__all__ = ["BACKBONES", "BackboneSpec", "build_features", "map_sizes", "stage_sizes"]

Layer = Conv | Pool | Norm


@dataclass(frozen=True)
class BackboneSpec:
    """A conv trunk: its layers and the (square) training input size its no-SPP head is tied to by default."""

    name: str
    layers: tuple[Layer, ...]
    input_size: int = 224

    @property
    def convs(self) -> list[Conv]:
        return [layer for layer in self.layers if isinstance(layer, Conv)]

    @property
    def feature_stride(self) -> int:
        """Product of all conv and pool strides (total stride of the last conv map)."""
        stride = 1
        for layer in self.layers:
            if not isinstance(layer, Norm):
                stride *= layer.s
        return stride


def _overfeat(depth: int) -> tuple[Layer, ...]:
    head = (
        Conv("conv1", 96, 7, 2),
        Pool("pool1", 3, 3),
        Norm("norm1", "within"),
        Conv("conv2", 256, 5, 1, 2),
        Pool("pool2", 2, 2),
        Norm("norm2", "within"),
    )
    return head + tuple(Conv(f"conv{i}", 512, 3, 1, 1) for i in range(3, depth + 1))


BACKBONES: dict[str, BackboneSpec] = {
    "zf5": BackboneSpec(
        "zf5",
        (
            Conv("conv1", 96, 7, 2, 1),
            Norm("norm1", "within"),
            Pool("pool1", 3, 2, ceil=True),
            Conv("conv2", 256, 5, 2, 0),
            Norm("norm2", "within"),
            Pool("pool2", 3, 2, ceil=True),
            Conv("conv3", 384, 3, 1, 1),
            Conv("conv4", 384, 3, 1, 1),
            Conv("conv5", 256, 3, 1, 1),
        ),
    ),
    "convnet5": BackboneSpec(
        "convnet5",
        (
            Conv("conv1", 96, 11, 4, 2),
            Norm("norm1", "krizhevsky"),
            Conv("conv2", 256, 5, 1, 2),
            Norm("norm2", "krizhevsky"),
            Pool("pool2", 3, 2),
            Conv("conv3", 384, 3, 1, 1),
            Pool("pool3", 3, 2),
            Conv("conv4", 384, 3, 1, 1),
            Conv("conv5", 256, 3, 1, 1),
        ),
    ),
    "overfeat5": BackboneSpec("overfeat5", _overfeat(5)),
    "overfeat7": BackboneSpec("overfeat7", _overfeat(7)),
    "alexnet": BackboneSpec(
        "alexnet",
        (
            Conv("conv1", 96, 11, 4, 0),
            Pool("pool1", 3, 2, ceil=True),
            Norm("norm1", "caffe"),
            Conv("conv2", 256, 5, 1, 2, groups=2),
            Pool("pool2", 3, 2, ceil=True),
            Norm("norm2", "caffe"),
            Conv("conv3", 384, 3, 1, 1),
            Conv("conv4", 384, 3, 1, 1, groups=2),
            Conv("conv5", 256, 3, 1, 1, groups=2),
        ),
        input_size=227,
    ),
}


def get_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone; unknown names raise ``ValueError`` listing the known ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(BACKBONES)}")
    return BACKBONES[name]


def build_features(
    spec: BackboneSpec, width: float = 1.0, in_channels: int = 3, batch_norm: bool = False, lrn: bool = True
) -> tuple[nn.Sequential, int]:
    """Build the conv trunk (named layers conv1, relu1, norm1, pool1, ...) and return it with its out channels.

    ``batch_norm`` puts a ``BatchNorm2d`` (``bn<i>``) between every conv and its ReLU, and drops the conv's bias
    (BN's shift replaces it). Not in the paper (2014 predates BN in these trunks): the embedded recipe's option,
    because the nets' LRN is inert on 112-pixel inputs and leaves them without any normalisation
    (``experiments/table2/README.md``).

    ``lrn=False`` leaves the specs' LRN layers out (the embedded recipe, with BN): at 112 px after BN the within-
    channel LRN divides by 1.00002 and the across-channel one (k = 2) by a constant 2^0.75 that the next BN undoes,
    yet the LRN took half of every CPU training step (measured in ``experiments/table2/README.md``).
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = in_channels
    for layer in spec.layers:
        if isinstance(layer, Conv):
            out = scale_channels(layer.out, width)
            conv = nn.Conv2d(channels, out, layer.k, layer.s, layer.p, groups=layer.groups, bias=not batch_norm)
            layers[layer.name] = conv
            if batch_norm:
                layers[layer.name.replace("conv", "bn")] = nn.BatchNorm2d(out)
            layers[layer.name.replace("conv", "relu")] = nn.ReLU(inplace=True)
            channels = out
        elif isinstance(layer, Pool):
            layers[layer.name] = nn.MaxPool2d(layer.k, layer.s, ceil_mode=layer.ceil)
        elif lrn:
            layers[layer.name] = make_norm(layer.kind)
    return nn.Sequential(layers), channels


def stage_sizes(name: str, input_size: int) -> dict[str, int]:
    """Side of every conv and pool output (by layer name) for a square ``input_size`` input, from the specs."""
    sizes: dict[str, int] = {}
    a = input_size
    for layer in get_spec(name).layers:
        if isinstance(layer, Conv):
            a = out_size(a, layer.k, layer.s, layer.p)
        elif isinstance(layer, Pool):
            a = out_size(a, layer.k, layer.s, 0, layer.ceil)
        else:
            continue
        if a < 1:
            raise ValueError(f"{name}: input {input_size} is too small (empty map after {layer.name})")
        sizes[layer.name] = a
    return sizes


def map_sizes(name: str, input_size: int) -> dict[str, int]:
    """Table 1's "map size" per conv column: the side at the end of each conv's stage (after its LRN/pool).

    A stage runs from one conv to the next, so e.g. Convnet*-5's conv2 column is pool2's output (27 at 224) and
    Overfeat's conv1 column is pool1's output (36). For the released ZF-5 this gives conv1 55 and conv2 13 (its
    conv2 output before pool2 is 26); Table 1 prints 27 there, which no layer of the released net produces.
    """
    sizes = stage_sizes(name, input_size)
    columns: dict[str, int] = {}
    current = None
    for layer in get_spec(name).layers:
        if isinstance(layer, Conv):
            current = layer.name
        if current is not None and layer.name in sizes:
            columns[current] = sizes[layer.name]
    return columns
