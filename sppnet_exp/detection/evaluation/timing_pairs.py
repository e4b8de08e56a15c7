"""Tables 9/10's timing rows in paired rounds: SPP-net 1-scale, 5-scale and R-CNN on the same images, interleaved.

Each pair runs the three methods back to back on one image, in an order that alternates between pairs
(:mod:`sppnet_exp.utils.paired`), so a machine whose speed drifts hits every method equally; speed-ups are taken
per pair and reported as the median with its 95% distribution-free interval. The per-image code is the one the
detection cells run (:func:`~.timing.time_spp_image`: the trunk at each scale, the one pooling path
:class:`~sppnet_exp.detection.features.pooling.WindowPooler`, fc6/fc7; :func:`~.timing.time_rcnn_image`: warp,
conv, fc6/fc7 in batches of 128).

Two geometries (``scale.timing.geometry``):

- ``paper`` — the paper's (section 4.1 and Table 9's caption, :class:`PaperGeometry`): a VOC-sized image
  (500x375, generated), ~2,000 windows, s = 688 or {480, 576, 688, 864, 1200}, the scale rule's 224-px crops,
  R-CNN warping to its net's input (227 AlexNet, 224 ZF-5) with 16 px of context, full-width nets with random
  weights: speed does not depend on trained weights, so this is what the table's timing rows measure on the
  embedded default, whose accuracy rows keep their small trained nets.
- ``data`` — the cell's own trained nets on its test images and proposals (the paper scale on real VOC 2007).

R-CNN, by far the longest side, may be timed on a fixed subset of each image's windows (``rcnn_windows``) and
scaled by the window count; that is right only where its cost is linear in the count, which
:func:`rcnn_linearity` measures in the same run (seconds per window at 128, 256, 512 windows, interleaved).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sppnet_exp.detection.evaluation.timing import time_rcnn_image, time_spp_image
from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.features.pooling import PoolingSpec, WindowPooler
from sppnet_exp.detection.features.warping import warp_windows
from sppnet_exp.models.geometry import receptive_field
from sppnet_exp.utils.paired import Derived, run_pairs

__all__ = [
    "LINEARITY_TOLERANCE",
    "PaperGeometry",
    "paired_timing",
    "paper_items",
    "paper_specs",
    "random_windows",
    "rcnn_linearity",
    "scene",
    "timing_rows",
]

log = logging.getLogger(__name__)

LINEARITY_TOLERANCE = 0.10  # per-window cost within 10% of its median over the counts: linear enough to scale
Item = tuple[torch.Tensor, np.ndarray]  # a uint8 [3,H,W] image and its 1-based windows


@dataclass(frozen=True)
class PaperGeometry:
    """The paper's timing geometry: VOC-sized images, ~2,000 windows, its scales, 224 crops, 16 px of context."""

    short: int = 375
    windows: int = 2000
    scales_1: tuple[int, ...] = (688,)
    scales_5: tuple[int, ...] = (480, 576, 688, 864, 1200)
    target_size: int = 224
    padding: int = 16
    images: int = 3
    seed: int = 0

    def describe(self) -> str:
        """One line for results and reports."""
        long = round(self.short * 4 / 3)
        return (
            f"{self.images} generated {long}x{self.short} scene(s), {self.windows} windows each, "
            f"s = {list(self.scales_1)} / {list(self.scales_5)}, crops {self.target_size}, context {self.padding} px"
        )


def paper_specs(net: torch.nn.Module, geom: PaperGeometry) -> tuple[PoolingSpec, PoolingSpec]:
    """The 1- and 5-scale pooling specs of ``net`` at ``geom`` with the detection cells' default rules."""
    sz_conv = int(net.feature_map_size(net.input_size, net.input_size)[0])
    rf, levels = receptive_field(net.features), tuple(net.levels)
    return tuple(  # type: ignore[return-value]
        PoolingSpec(rf, levels, scales, target=geom.target_size, sz_conv=sz_conv)
        for scales in (geom.scales_1, geom.scales_5)
    )


def scene(short: int = 375, seed: int = 0) -> torch.Tensor:
    """A generated VOC-like scene (uint8 [3,H,W]), short side ``short``, landscape 4:3 like most VOC images."""
    from sppnet_exp.data.generated_det import render_scene

    img, _ = render_scene(np.random.default_rng(seed), 6, min_side=short, max_side=short)
    arr = np.asarray(img.convert("RGB"))
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    size = (short, round(short * 4 / 3))
    return torch.nn.functional.interpolate(t[None].float(), size=size, mode="bilinear")[0].round().byte()


def random_windows(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """``n`` 1-based boxes with log-uniform sides from 20 px to the image size (like selective search's spread)."""
    rng = np.random.default_rng(seed)
    w = np.exp(rng.uniform(np.log(20), np.log(width), n))
    h = np.exp(rng.uniform(np.log(20), np.log(height), n))
    x1 = rng.uniform(1, width - w + 1)
    y1 = rng.uniform(1, height - h + 1)
    return np.stack([x1, y1, x1 + w - 1, y1 + h - 1], 1).astype(np.float32)


def paper_items(geom: PaperGeometry) -> list[Item]:
    """``geom.images`` generated scenes with ``geom.windows`` windows each (seeded)."""
    items = []
    for i in range(geom.images):
        img = scene(geom.short, geom.seed + i)
        h, w = img.shape[-2:]
        items.append((img, random_windows(geom.windows, w, h, geom.seed + i)))
    return items


def rcnn_linearity(
    rcnn: Callable[[np.ndarray], dict[str, float]], boxes: np.ndarray, counts: Sequence[int], rounds: int = 2
) -> dict[str, Any]:
    """Seconds per window of R-CNN's conv, fc and warp at each window count (counts interleaved, ``rounds``
    rounds after one warm-up call); ``linear`` when every count's per-window conv cost is within
    :data:`LINEARITY_TOLERANCE` of the median over counts."""
    counts = [int(k) for k in counts if k <= len(boxes)] or [len(boxes)]
    rcnn(boxes[: min(counts)])
    per: dict[int, list[dict[str, float]]] = {k: [] for k in counts}
    for r in range(rounds):
        for k in counts if r % 2 == 0 else counts[::-1]:
            t = rcnn(boxes[:k])
            per[k].append({m: t[m] / k for m in ("conv_s", "fc_s", "other_s")})
    rows = [
        {"windows": k, **{m: float(np.median([t[m] for t in ts])) for m in ("conv_s", "fc_s", "other_s")}}
        for k, ts in per.items()
    ]
    conv = np.array([r["conv_s"] for r in rows])
    deviation = float(np.max(np.abs(conv / np.median(conv) - 1.0)))
    return {
        "counts": counts,
        "rounds": rounds,
        "per_window_s": rows,
        "max_deviation": deviation,
        "tolerance": LINEARITY_TOLERANCE,
        "linear": deviation <= LINEARITY_TOLERANCE,
    }


def _cycle(items: Sequence[Item]) -> Callable[[], Item]:
    """A side's own pass over the items: every side is called once per round, so all see the same image."""
    state = {"i": 0}

    def nxt() -> Item:
        item = items[state["i"] % len(items)]
        state["i"] += 1
        return item

    return nxt


def _total(t: Mapping[str, float]) -> float:
    return t["conv_s"] + t["fc_s"] + t["other_s"]


def _derived(rcnn: str, targets: Mapping[str, float]) -> dict[str, Derived]:
    def t(name: str) -> float | None:
        return float(targets[name]) if name in targets else None

    def ratio(num: str, den: str, key: str) -> Callable[[dict], float]:
        return lambda p: p[num][key] / p[den][key]

    def total_ratio(den: str) -> Callable[[dict], float]:
        return lambda p: _total(p[rcnn]) / _total(p[den])

    return {
        "conv_speedup_1scale": Derived(ratio(rcnn, "spp_1scale", "conv_s"), t("conv_speedup_1scale")),
        "conv_speedup_5scale": Derived(ratio(rcnn, "spp_5scale", "conv_s"), t("conv_speedup_5scale")),
        "speedup_1scale": Derived(total_ratio("spp_1scale"), t("speedup_1scale")),
        "speedup_5scale": Derived(total_ratio("spp_5scale"), t("speedup_5scale")),
        "window_spp_frac": Derived(
            lambda p: p["spp_1scale"]["pool_s"] / p["spp_1scale"]["conv_s"], t("window_spp_frac"), "<="
        ),
        "other_frac": Derived(lambda p: max(x["other_s"] / _total(x) for x in p.values()), t("other_frac"), "<="),
    }


@torch.no_grad()
def paired_timing(
    spp_net: torch.nn.Module,
    rcnn_net: torch.nn.Module,
    items: Sequence[Item],
    spec_1: PoolingSpec,
    spec_5: PoolingSpec,
    warp_size: int,
    padding: int,
    rcnn_key: str = "rcnn",
    rcnn_windows: int | None = None,
    min_pairs: int = 6,
    max_pairs: int | None = None,
    warmup: int = 1,
    budget_s: float | None = None,
    targets: Mapping[str, float] | None = None,
    linearity_counts: Sequence[int] = (128, 256, 512),
    linearity_rounds: int = 2,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Paired per-image conv / fc / other seconds of SPP 1-scale, SPP 5-scale and R-CNN (``rcnn_key``).

    ``spp_net``/``rcnn_net`` are :class:`~sppnet_exp.models.net.SPPNet` s (``features``, ``fc``, ``pool``,
    ``levels``); ``spec_1``/``spec_5`` pool SPP-net's windows at 1 and 5 scales (the detection cells' specs).
    Round ``r`` times every method on ``items[r % len(items)]``; the first ``warmup`` rounds are
    discarded. R-CNN is timed on the first ``rcnn_windows`` windows of each image (all when None) and scaled to
    the image's window count; :func:`rcnn_linearity` is measured first when it scales. Returns
    :func:`~sppnet_exp.utils.paired.run_pairs`'s summary plus ``methods`` (per-method medians, R-CNN scaled),
    ``rcnn_linearity`` (None when not scaled), ``rcnn_windows_timed`` and ``windows``.
    """
    device = torch.device(device)
    targets = dict(targets or {})
    spp_net, rcnn_net = spp_net.to(device).eval(), rcnn_net.to(device).eval()
    spp_head = FCHead.from_fc(spp_net.fc).to(device).eval()
    rcnn_head = FCHead.from_fc(rcnn_net.fc).to(device).eval()

    def spp(spec: PoolingSpec) -> Callable[[], dict[str, float]]:
        pooler = WindowPooler(spec)
        nxt = _cycle(items)

        def side() -> dict[str, float]:
            img, boxes = nxt()
            return time_spp_image(spp_net.features, spp_head, img, boxes, pooler, device)

        return side

    def rcnn_on(img: torch.Tensor, boxes: np.ndarray) -> dict[str, float]:
        return time_rcnn_image(
            rcnn_net, rcnn_head, img, boxes, lambda im, b: warp_windows(im, b, warp_size, padding), device=device
        )

    nxt_rcnn = _cycle(items)

    def rcnn() -> dict[str, float]:
        img, boxes = nxt_rcnn()
        n = len(boxes)
        k = min(n, rcnn_windows) if rcnn_windows else n
        t = rcnn_on(img, boxes[:k])
        scale = n / k if k else 1.0
        return {**{m: t[m] * scale for m in ("conv_s", "fc_s", "other_s")}, "windows": n, "timed_windows": k}

    windows = [len(b) for _, b in items]
    scaled = bool(rcnn_windows) and max(windows) > int(rcnn_windows or 0)
    linearity = None
    if scaled:
        img, boxes = items[0]
        linearity = rcnn_linearity(lambda b: rcnn_on(img, b), boxes, linearity_counts, linearity_rounds)
        if not linearity["linear"]:
            log.warning(
                f"R-CNN's conv cost per window deviates {linearity['max_deviation']:.1%} across window counts "
                f"{linearity['counts']} (> {LINEARITY_TOLERANCE:.0%}): scaling from {rcnn_windows} windows is rough"
            )
    res = run_pairs(
        {"spp_1scale": spp(spec_1), "spp_5scale": spp(spec_5), rcnn_key: rcnn},
        _derived(rcnn_key, targets),
        min_pairs=min_pairs,
        max_pairs=max_pairs,
        warmup=warmup,
        budget_s=budget_s,
    )
    methods: dict[str, dict[str, float]] = {}
    for name, figures in res["sides"].items():
        m = {key: float(v["median"]) for key, v in figures.items()}
        m["total_s"] = m["conv_s"] + m["fc_s"] + m["other_s"]
        methods[name] = m
    return {
        **res,
        "methods": methods,
        "windows": float(np.mean(windows)),
        "rcnn_windows_timed": int(min(max(windows), rcnn_windows)) if scaled else None,
        "rcnn_linearity": linearity,
        "scales_1": list(spec_1.scales),
        "scales_5": list(spec_5.scales),
        "threads": torch.get_num_threads(),
        "targets": targets,
    }


def timing_rows(res: Mapping[str, Any], rcnn_key: str) -> dict[str, dict[str, float]]:
    """The table's view per method: medians of conv / fc / other / total seconds, and per SPP method the
    per-pair speed-ups over R-CNN (``speedup``, ``conv_speedup``) with their interval (``*_lo``, ``*_hi``)."""
    rows = {k: dict(v) for k, v in res["methods"].items()}
    for name, tag in (("spp_1scale", "1scale"), ("spp_5scale", "5scale")):
        for metric, key in (("speedup", f"speedup_{tag}"), ("conv_speedup", f"conv_speedup_{tag}")):
            d = res["derived"][key]
            rows[name].update({metric: d["median"], f"{metric}_lo": d["lo"], f"{metric}_hi": d["hi"]})
    rows[rcnn_key].setdefault("windows", res["windows"])
    return rows
