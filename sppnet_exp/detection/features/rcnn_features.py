"""R-CNN pool5 features: every window warped (:mod:`.warping`) and sent through the whole trunk and pool."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from sppnet_exp.detection.features.warping import GEOMETRIES, _check_boxes, _prepare, warp_windows
from sppnet_exp.models import SPPNet

__all__ = ["RCNNFeatures"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RCNNFeatures:
    """R-CNN pool5 features: ``(index, boxes) -> Tensor[K, D]`` = ``pool(features(warp(window)))`` per window.

    For an SPP net this is its pyramid over the conv5 map of the warped window; for a no-SPP net the 6x6 pool5.
    The model is moved to ``device`` and run in eval mode without gradients, ``batch_size`` windows at a time.
    Features come back as CPU float32.
    """

    def __init__(
        self,
        model: SPPNet,
        load_image: Callable[[int], Tensor],
        size: int | None = None,
        padding: int = 16,
        batch_size: int = 128,
        device: torch.device | str = "cpu",
        geometry: str = "paper",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"RCNNFeatures: batch_size must be positive, got {batch_size}")
        if geometry not in GEOMETRIES:
            raise ValueError(f"RCNNFeatures: geometry must be one of {GEOMETRIES}, got {geometry!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.load_image = load_image
        self.size = int(size or model.input_size)
        self.padding, self.batch_size, self.geometry = int(padding), int(batch_size), geometry

    @property
    def dim(self) -> int:
        """Length D of a window's pooled vector."""
        return int(self.model.pool.output_dim(self.model.out_channels))

    def __call__(self, index: int, boxes: np.ndarray) -> Tensor:
        return self.pooled(self.load_image(index), boxes)

    def pooled(self, image: Tensor, boxes: np.ndarray) -> Tensor:
        """Pool5 features of the windows of one image (``uint8 [3, H, W]``)."""
        return self._run(image, boxes)[0]

    def time_image(self, image: Tensor | int, boxes: np.ndarray) -> dict[str, float]:
        """Seconds spent warping (``warp_s``) and in conv + pool (``conv_s``) for one image's windows.

        ``image`` is an image tensor or an index for ``load_image`` (decoding is not timed). CUDA is synchronised
        around every timed part.
        """
        img = self.load_image(image) if isinstance(image, int) else image
        _, warp_s, conv_s = self._run(img, boxes)
        return {"warp_s": warp_s, "conv_s": conv_s, "windows": float(len(np.asarray(boxes).reshape(-1, 4)))}

    def conv_seconds(self, image: Tensor | int, boxes: np.ndarray) -> float:
        """Seconds of conv (features + pool) over the warped windows of one image (warping excluded)."""
        return self.time_image(image, boxes)["conv_s"]

    @torch.inference_mode()
    def _run(self, image: Tensor, boxes: np.ndarray) -> tuple[Tensor, float, float]:
        self.model.eval()
        b = _check_boxes(np.asarray(boxes).reshape(-1, 4))
        x = _prepare(image, self.device)
        out = torch.empty((len(b), self.dim), dtype=torch.float32)
        warp_s = conv_s = 0.0
        for start in range(0, len(b), self.batch_size):
            _sync(self.device)
            t0 = time.perf_counter()
            windows = warp_windows(x, b[start : start + self.batch_size], self.size, self.padding, self.geometry)
            _sync(self.device)
            t1 = time.perf_counter()
            feats = self.model.pool(self.model.features(windows)).flatten(1)
            _sync(self.device)
            t2 = time.perf_counter()
            out[start : start + len(feats)] = feats.float().cpu()
            warp_s, conv_s = warp_s + (t1 - t0), conv_s + (t2 - t1)
        return out, warp_s, conv_s
