"""The layer features of Tables 6-7: one forward pass of a pretrained net per image view (paper section 3.2).

Rows (the paper's names for ZF-5; for Overfeat-7 they are conv6/conv7, pool7, fc8/fc9 in the paper's numbering):

* ``conv4``, ``conv5``: the rectified maps of the last two convolutions, flattened — crops and warps only (a full
  image's map has another size per image);
* ``pool5``: the 6x6 level — an SPP net's 6x6 pyramid level, the no-SPP net's own 6x6 pool5;
* ``spp_pool5``: every pyramid level, concatenated as fc6 reads them (SPP nets only);
* ``fc6``, ``fc7``: the rectified fully-connected layers (dropout off: the net is in eval mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from sppnet_exp.models.net import SPPNet
from sppnet_exp.models.spp import SpatialPyramidPooling
from sppnet_exp.transfer.views import view

__all__ = ["LAYERS", "extract", "layer_features", "layers_for"]

LAYERS = ("conv4", "conv5", "pool5", "spp_pool5", "fc6", "fc7")


def layers_for(net: SPPNet, kind: str, wanted: Sequence[str] = LAYERS) -> list[str]:
    """The rows of ``wanted`` that ``net`` gives from view ``kind``: no SPP pool5 without a pyramid, no conv map
    (its size varies) and no no-SPP head (a fixed input) from the full image."""
    out = []
    for layer in wanted:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; one of {LAYERS}")
        if layer == "spp_pool5" and net.head != "spp":
            continue
        if kind == "full" and (layer in ("conv4", "conv5") or net.head != "spp"):
            continue
        out.append(layer)
    return out


def _conv4_output(features: nn.Sequential) -> str:
    """Name of the module whose output is "conv4": the ReLU after the second-last convolution (``relu4`` in ZF-5);
    conv5 is the trunk's own output."""
    names = list(features._modules)
    i = [j for j, n in enumerate(names) if isinstance(features._modules[n], nn.Conv2d)][-2]
    after = [j for j in range(i + 1, len(names)) if isinstance(features._modules[names[j]], nn.ReLU)]
    return names[after[0]] if after else names[i]


@torch.no_grad()
def layer_features(net: SPPNet, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """``layers`` of ``net`` for a batch ``x`` (N x 3 x h x w, normalised), each N x D float32 on ``x``'s device."""
    want = set(layers)
    penult = _conv4_output(net.features)
    out: dict[str, Tensor] = {}
    h = x
    for name, module in net.features.named_children():
        h = module(h)
        if name == penult and "conv4" in want:
            out["conv4"] = h.flatten(1).float()
    if "conv5" in want:
        out["conv5"] = h.flatten(1).float()
    pool = net.pool
    pooled = pool(h)
    if "pool5" in want:
        out["pool5"] = (pool.pool_level(h, 6) if isinstance(pool, SpatialPyramidPooling) else pooled).float()
    if "spp_pool5" in want:
        if not isinstance(pool, SpatialPyramidPooling):
            raise ValueError(f"{net.name} ({net.head}) has no pyramid: no spp_pool5 feature")
        out["spp_pool5"] = pooled.float()
    if want & {"fc6", "fc7"}:
        f6 = torch.relu(net.fc.fc6(pooled))
        out["fc6"] = f6.float()
        if "fc7" in want:
            out["fc7"] = torch.relu(net.fc.fc7(f6)).float()
    return {k: out[k] for k in layers}


@torch.no_grad()
def extract(
    net: SPPNet,
    images: Iterable[Tensor],
    kind: str,
    size: int,
    layers: Sequence[str],
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """``layers`` of ``net`` for every image (``uint8 [3,H,W]``) from view ``kind`` at size ``size``, as
    ``{layer: (N, D) float32}``. Crops and warps go in batches; full images one by one (their sizes differ)."""
    net = net.to(device).eval()
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in layers}
    batch: list[Tensor] = []
    done = 0

    def flush() -> None:
        nonlocal done
        if not batch:
            return
        feats = layer_features(net, torch.stack(batch).to(device), layers)
        for k, v in feats.items():
            chunks[k].append(v.cpu().numpy())
        done += len(batch)
        batch.clear()
        if progress is not None:
            progress(done)

    for img in images:
        batch.append(view(img, kind, size))
        if kind == "full" or len(batch) >= batch_size:
            flush()
    flush()
    return {k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in chunks.items()}
