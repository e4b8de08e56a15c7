"""Table 4's multi-view finding, scale by scale: the top-1 error of one checkpoint's views at each multi-view scale,
pooled from the feature maps (the 18 views of a scale, 6 at the smallest) and as 10-view image crops at that scale.

    .venv/bin/python experiments/table4/per_scale.py outputs/runs/overfeat7_spp_multi/generated-embedded-s*/ \
        --every 4 --out experiments/table4

writes ``per_scale.json`` (per run: the errors per scale, the settings, the images used) and ``per_scale.png``
(mean ± std over the runs). It explains the embedded result of ``make table4``: whether the 96 views lose because
the mapping is wrong (crops at the same scale would then do better) or because the net fails on magnified views.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from sppnet_exp.classification.classifier import SPPClassifier
from sppnet_exp.classification.map_views import MapViewSettings, MapViewTester
from sppnet_exp.data.batches import to_float
from sppnet_exp.data.images import decode_file
from sppnet_exp.data.transforms import EvalTransform, resize_short
from sppnet_exp.engine.wiring import build_datamodule
from sppnet_exp.utils.io import atomic_write_json


def per_scale_errors(run: Path, every: int) -> dict:
    """Top-1 errors (%) per scale of the map views and of 10-view crops, on every ``every``-th test image."""
    results = json.loads((run / "results.json").read_text())
    cfg = OmegaConf.create(results["config"])
    net = SPPClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").net.eval()
    dm = build_datamodule(cfg)
    dm.setup("test")
    samples = dm.eval_samples[::every]
    m = cfg.eval.map
    settings = MapViewSettings(
        crop=int(cfg.data.crop), ten_scale=int(cfg.data.resize), full_scale=int(cfg.data.full_resize),
        scales=None if m.scales is None else tuple(m.scales), mapping=str(m.mapping), offset=float(m.offset),
    )  # fmt: skip
    tester = MapViewTester(net, settings)
    scales = list(settings.scales or ())
    right_maps, right_crops = np.zeros(len(scales)), np.zeros(len(scales))
    with torch.no_grad():
        for path, target in samples:
            img = decode_file(path)
            views = tester.views("multiview", *img.shape[-2:])
            for i, s in enumerate(scales):
                resized = resize_short(img, s)
                maps = net.features(to_float(torch.stack([resized, resized.flip(-1)])))
                probs = []
                for k, flip in enumerate((False, True)):
                    mine = [v for v in views if v.scale == s and v.flip == flip]
                    cells = tester.cells(mine, maps.shape[-2], maps.shape[-1], resized.shape[-1])
                    probs.append(net.classifier(net.fc(tester.pool(maps[k], cells))).softmax(-1))
                right_maps[i] += int(torch.cat(probs).mean(0).argmax()) == int(target)
                crops = EvalTransform("10view", resize=s, crop=settings.crop).views(img)
                right_crops[i] += int(net(to_float(crops)).softmax(-1).mean(0).argmax()) == int(target)
    n = len(samples)
    return {
        "run": str(run),
        "seed": results["seed"],
        "images": n,
        "every": every,
        "scales": scales,
        "maps_top1_err": [round(100 * (1 - r / n), 2) for r in right_maps],
        "crops_10view_top1_err": [round(100 * (1 - r / n), 2) for r in right_crops],
        "train_size": int(cfg.data.resize),
    }


def plot(rows: list[dict], path: Path) -> None:
    """Mean ± std over the runs of both errors against the scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = rows[0]["scales"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("maps_top1_err", "views pooled from the maps"), ("crops_10view_top1_err", "10-view crops")):
        v = np.array([r[key] for r in rows])
        ax.errorbar(scales, v.mean(0), yerr=v.std(0), marker="o", capsize=3, label=label)
    ax.axvline(rows[0]["train_size"], color="grey", ls=":", label="training resize")
    ax.set(xlabel="test scale s (shorter side, px)", ylabel="top-1 error (%)",
           title=f"one scale's views, {len(rows)} run(s)")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run dirs of the Table 4 cell (results.json + checkpoint)")
    parser.add_argument("--every", type=int, default=4, help="every k-th test image (1: all)")
    parser.add_argument("--out", type=Path, default=Path("experiments/table4"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = [per_scale_errors(run, args.every) for run in args.runs]
    for r in rows:
        print(f"seed {r['seed']}: maps {r['maps_top1_err']}  crops {r['crops_10view_top1_err']}  (s = {r['scales']})")
    atomic_write_json(args.out / "per_scale.json", {"rows": rows})
    plot(rows, args.out / "per_scale.png")


if __name__ == "__main__":
    main()
