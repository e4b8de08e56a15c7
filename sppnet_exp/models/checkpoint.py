"""The network of a classification checkpoint, without the training module around it.

A Table 2 run's ``last.ckpt`` is Lightning's: the classifier's ``hyper_parameters`` (the ``build_model`` kwargs
under ``model`` and ``num_classes``) and a ``state_dict`` whose network weights are under ``net.``. What starts
from a trained net — a detection cell (its pretrained ZF-5 or AlexNet), a benchmark — rebuilds the net from those
and loads its weights (strictly: every tensor, BN statistics included), so it needs the model package only.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sppnet_exp.models.net import SPPNet, build_model

__all__ = ["load_net"]


def load_net(path: str | os.PathLike[str]) -> SPPNet:
    """The network stored in the classification checkpoint at ``path``, on the CPU, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or not isinstance(hp.get("model"), dict) or "num_classes" not in hp:
        raise ValueError(f"{path}: not a classification checkpoint (no hyper_parameters.model / num_classes)")
    net = build_model(**{**hp["model"], "num_classes": int(hp["num_classes"])})
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state, strict=True)
    return net.eval()
