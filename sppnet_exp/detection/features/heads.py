"""fc6/fc7 on pooled window features: the layers the SVMs read (``spp_poolX_to_fcX.m``).

Layer 5 is the pooled conv5 vector itself, layer 6 is ``relu(fc6 x)`` and layer 7 is ``relu(fc7 relu(fc6 x))``. No
dropout is applied at feature time. The authors' MATLAB code also omits the dropout scaling that their Caffe fork
applies at test time (SPP_net issue #51, measured at about 0.5 mAP and left as is). PyTorch uses inverted dropout
(scaled during training), so the unscaled test-time product here is already the matching convention.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["LAYERS", "FCHead"]

LAYERS = ("pool5", "fc6", "fc7")


class FCHead(nn.Module):
    """fc6 -> ReLU -> fc7 -> ReLU without dropout; ``forward`` gives fc7 features."""

    def __init__(self, fc6: nn.Linear, fc7: nn.Linear) -> None:
        super().__init__()
        if fc7.in_features != fc6.out_features:
            raise ValueError(f"FCHead: fc7 takes {fc7.in_features} inputs but fc6 gives {fc6.out_features}")
        self.fc6, self.fc7 = fc6, fc7

    @classmethod
    def from_fc(cls, fc: nn.Module | Mapping[str, Tensor]) -> FCHead:
        """Copy fc6/fc7 from a module with ``fc6``/``fc7`` children (``SPPNet.fc``, a fine-tuned net) or its
        state dict (keys ``fc6.weight``, ``fc6.bias``, ``fc7.weight``, ``fc7.bias``; other keys are ignored)."""
        if isinstance(fc, nn.Module):
            if not all(isinstance(getattr(fc, n, None), nn.Linear) for n in ("fc6", "fc7")):
                raise ValueError(f"FCHead.from_fc: {type(fc).__name__} has no fc6/fc7 Linear layers")
            return cls(copy.deepcopy(fc.fc6), copy.deepcopy(fc.fc7))
        missing = [k for k in ("fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias") if k not in fc]
        if missing:
            raise ValueError(f"FCHead.from_fc: state dict lacks {missing}")
        layers = []
        for name in ("fc6", "fc7"):
            w, b = fc[f"{name}.weight"], fc[f"{name}.bias"]
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.load_state_dict({"weight": w.detach().clone(), "bias": b.detach().clone()})
            layers.append(lin)
        return cls(*layers)

    @property
    def in_dim(self) -> int:
        return self.fc6.in_features

    @property
    def out_dim(self) -> int:
        return self.fc7.out_features

    def layer_dim(self, layer: str) -> int:
        """Feature dimension of ``layer``."""
        _check_layer(layer)
        return {"pool5": self.in_dim, "fc6": self.fc6.out_features, "fc7": self.out_dim}[layer]

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc7(torch.relu(self.fc6(x))))

    @torch.no_grad()
    def layer_features(self, pool5: Tensor | np.ndarray, layer: str = "fc7", batch_size: int = 4096) -> Tensor:
        """Features of ``layer`` for pool5 rows (K, D), float32, on the input's device (numpy input: CPU).

        Rows are processed in chunks of ``batch_size`` on the head's device; fp16 input (a cache) is upcast.
        """
        _check_layer(layer)
        x = torch.as_tensor(np.asarray(pool5)) if isinstance(pool5, np.ndarray) else pool5
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"layer_features: expected pool5 of shape (K, {self.in_dim}), got {tuple(x.shape)}")
        if layer == "pool5":
            return x.float()
        device = self.fc6.weight.device
        dtype = self.fc6.weight.dtype
        outs = []
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size].to(device=device, dtype=dtype, non_blocking=True)
            h = torch.relu(self.fc6(chunk))
            if layer == "fc7":
                h = torch.relu(self.fc7(h))
            outs.append(h.float().to(x.device))
        if not outs:
            return torch.zeros(0, self.layer_dim(layer), dtype=torch.float32, device=x.device)
        return torch.cat(outs)

    def layer_fn(self, layer: str = "fc7", batch_size: int = 4096) -> Callable[[Tensor], Tensor]:
        """``pool5 -> layer`` features as a one-argument callable (for :func:`~.svm.train_svms`)."""
        _check_layer(layer)
        return lambda pool5: self.layer_features(pool5, layer, batch_size)


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
