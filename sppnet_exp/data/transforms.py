"""Training augmentation and evaluation views, as in SPP-net section 3.1 (on ``uint8`` tensors until the end).

Training: resize the shorter side to ``resize`` (keeping the aspect ratio), take a ``crop``x``crop`` crop from
one of the 4 corners or the centre of the WHOLE resized image (``train_crop="five"``; ``"random"`` is a
uniform random position), horizontal flip, and AlexNet PCA lighting noise ("colour altering", std ``color``; 0
disables). Evaluation views: ``"10view"`` (4 corners + centre of the image resized to short side ``resize``,
and their flips: ``[10,3,crop,crop]``), ``"center"`` (``[1,3,crop,crop]``) and ``"full"`` (the whole image
with min side ``full_resize``: ``[1,3,H,W]``).

Normalisation: pixels are scaled to [0, 1] and normalised per channel with the ImageNet mean ``(0.485, 0.456,
0.406)`` and std ``(0.229, 0.224, 0.225)``; the PCA lighting uses the standard ImageNet RGB
eigen-decomposition on the same [0, 1] scale.

Two output paths share every random decision. ``TrainTransform.__call__`` / ``EvalTransform.__call__`` return
normalised float32 (the original path, ``data.worker_output=float32``). ``TrainTransform.sample`` returns the
``uint8`` crop and its :class:`TrainPlan` (crop position, flip, lighting shift), and ``EvalTransform.views`` the
``uint8`` views; :mod:`sppnet_exp.data.batches` then normalises and lights whole batches on the device with
the same operations in the same order, so both paths give the same numbers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Eigen-decomposition of the ImageNet RGB pixel covariance (pixels in [0, 1]), as in AlexNet's lighting noise.
PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = torch.tensor(
    [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ]
)
EVAL_VIEWS = ("10view", "center", "full")
TRAIN_CROPS = ("five", "random")


def resized_size(height: int, width: int, short: int) -> tuple[int, int]:
    """Size ``(h, w)`` after resizing so that the shorter side is ``short`` (long side rounded)."""
    if height <= width:
        return short, max(1, int(round(width * short / height)))
    return max(1, int(round(height * short / width))), short


def resize_short(img: torch.Tensor, short: int) -> torch.Tensor:
    """Resize a ``uint8 [3,H,W]`` image so its shorter side is ``short`` (antialiased)."""
    h, w = resized_size(img.shape[-2], img.shape[-1], short)
    if (h, w) == tuple(img.shape[-2:]):
        return img
    return F.resize(img, [h, w], antialias=True)


def five_positions(height: int, width: int, crop: int) -> list[tuple[int, int]]:
    """``(top, left)`` of the 4 corner crops (tl, tr, bl, br) and the centre crop, in that order."""
    if height < crop or width < crop:
        raise ValueError(f"image {height}x{width} is smaller than the crop {crop}")
    b, r = height - crop, width - crop
    return [(0, 0), (0, r), (b, 0), (b, r), (b // 2, r // 2)]


def normalize(img: torch.Tensor) -> torch.Tensor:
    """``uint8``/[0,255] or float [0,1] image(s) ``[...,3,H,W]`` → float normalised with ImageNet mean/std."""
    x = img.float() / 255.0 if img.dtype == torch.uint8 else img
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def lighting_shift(std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The RGB shift ``V (alpha * lambda)``, ``alpha ~ N(0, std)`` of AlexNet's PCA lighting (float ``[3]``)."""
    alpha = torch.randn(3, generator=generator) * std
    return PCA_EIGVEC @ (alpha * PCA_EIGVAL)


def pca_lighting(img: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """AlexNet PCA lighting on a float [0,1] ``[3,H,W]`` image: add ``V (alpha * lambda)``, alpha~N(0,std)."""
    if std <= 0:
        return img
    return img + lighting_shift(std, generator).view(3, 1, 1).to(img.dtype)


@dataclass(frozen=True)
class TrainPlan:
    """The random decisions for one training image: crop ``(top, left)`` in the resized image, the flip, and
    the PCA lighting shift (``None`` when lighting is off). Drawn in the order crop, flip, lighting."""

    top: int
    left: int
    flip: bool
    shift: torch.Tensor | None


class TrainTransform:
    """Paper training augmentation: short-side resize, 5-position (or random) crop, flip, PCA lighting."""

    def __init__(
        self,
        resize: int = 256,
        crop: int = 224,
        train_crop: str = "five",
        flip: bool = True,
        color: float = 0.1,
    ) -> None:
        if train_crop not in TRAIN_CROPS:
            raise ValueError(f"train_crop must be one of {TRAIN_CROPS}, got {train_crop!r}")
        if crop > resize:
            raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
        self.resize, self.crop, self.train_crop, self.flip, self.color = resize, crop, train_crop, flip, color

    def plan(self, height: int, width: int, generator: torch.Generator | None = None) -> TrainPlan:
        """Draw the decisions for an original ``height`` x ``width`` image (torch RNG or ``generator``)."""
        h, w = resized_size(height, width, self.resize)
        if self.train_crop == "five":
            k = int(torch.randint(5, (1,), generator=generator))
            top, left = five_positions(h, w, self.crop)[k]
        else:
            if h < self.crop or w < self.crop:
                raise ValueError(f"image {h}x{w} is smaller than the crop {self.crop}")
            top = int(torch.randint(h - self.crop + 1, (1,), generator=generator))
            left = int(torch.randint(w - self.crop + 1, (1,), generator=generator))
        flip = bool(self.flip and bool(torch.rand(1, generator=generator) < 0.5))
        shift = lighting_shift(self.color, generator) if self.color > 0 else None
        return TrainPlan(top, left, flip, shift)

    def apply(self, img: torch.Tensor, plan: TrainPlan) -> torch.Tensor:
        """The ``uint8 [3,crop,crop]`` crop of ``plan`` (resize, crop, flip; on whatever device ``img`` is)."""
        img = resize_short(img, self.resize)
        img = img[:, plan.top : plan.top + self.crop, plan.left : plan.left + self.crop]
        return img.flip(-1) if plan.flip else img

    def sample(self, img: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, TrainPlan]:
        """``uint8 [3,H,W]`` → (``uint8 [3,crop,crop]`` contiguous crop, its plan): the worker's uint8 output."""
        plan = self.plan(img.shape[-2], img.shape[-1], generator)
        return self.apply(img, plan).contiguous(), plan

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``uint8 [3,H,W]`` → normalised float ``[3,crop,crop]`` (torch RNG or ``generator``)."""
        crop, plan = self.sample(img, generator)
        x = crop.float() / 255.0
        if plan.shift is not None:
            x = x + plan.shift.view(3, 1, 1).to(x.dtype)
        return normalize(x)


class EvalTransform:
    """A deterministic test view: ``"10view"`` → ``[10,3,c,c]``, ``"center"`` → ``[1,3,c,c]``, ``"full"``."""

    def __init__(self, view: str, resize: int = 256, crop: int = 224, full_resize: int = 256) -> None:
        if view not in EVAL_VIEWS:
            raise ValueError(f"eval view must be one of {EVAL_VIEWS}, got {view!r}")
        if crop > resize:
            raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
        self.view, self.resize, self.crop, self.full_resize = view, resize, crop, full_resize

    def views(self, img: torch.Tensor) -> torch.Tensor:
        """``uint8 [3,H,W]`` → its ``uint8 [V,3,h,w]`` views (contiguous; on whatever device ``img`` is)."""
        c = self.crop
        if self.view == "full":
            return resize_short(img, self.full_resize).unsqueeze(0).contiguous()
        img = resize_short(img, self.resize)
        positions = five_positions(img.shape[-2], img.shape[-1], c)
        if self.view == "center":
            top, left = positions[4]
            return img[:, top : top + c, left : left + c].unsqueeze(0).contiguous()
        crops = torch.stack([img[:, t : t + c, s : s + c] for t, s in positions])
        return torch.cat([crops, crops.flip(-1)])

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """``uint8 [3,H,W]`` → normalised float ``[V,3,h,w]``."""
        return normalize(self.views(img))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of this view for an original image of ``height``x``width``."""
        if self.view == "full":
            return resized_size(height, width, self.full_resize)
        return self.crop, self.crop
