"""Analytic model complexity (pycls style): parameters, multiply-adds and activations from the layer specs.

Counts conv and fc layers only: ``macs`` = multiply-accumulates (FLOPs ~ 2*macs), ``params`` = weights +
biases (with ``batch_norm``: no conv bias, BN's scale and shift), ``acts`` = conv/fc output elements. Pooling,
LRN, BN and ReLU are not counted in ``macs``/``acts`` (BN folds into the conv at inference). Nothing is built or run.

``python -m sppnet_exp.models.complexity`` prints the table; ``--write`` stores it in
``experiments/golden/model_complexity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sppnet_exp.models.backbones import BACKBONES, get_spec
from sppnet_exp.models.layers import Conv, Pool, out_size, scale_channels, scale_width

__all__ = ["GOLDEN_PATH", "complexity", "golden_configs", "golden_table"]

GOLDEN_PATH = Path(__file__).resolve().parents[2] / "experiments" / "golden" / "model_complexity.json"
TABLE1_MODELS = ("zf5", "convnet5", "overfeat5", "overfeat7")


def complexity(
    name: str,
    head: str = "spp",
    levels: Sequence[int] = (6, 3, 2, 1),
    num_classes: int = 1000,
    width: float = 1.0,
    input_size: int | None = None,
    input_hw: tuple[int, int] | None = None,
    batch_norm: bool = False,
) -> dict[str, int]:
    """``{"params", "macs", "acts"}`` of ``build_model(name, head, levels, num_classes, width, input_size,
    batch_norm=batch_norm)``.

    ``input_hw`` (spp head only) is the forward size when it differs from the square training ``input_size``.
    """
    spec = get_spec(name)
    size = input_size or spec.input_size
    h, w = input_hw or (size, size)
    if head == "nospp" and (h, w) != (size, size):
        raise ValueError(f"no-SPP models only accept {size}x{size} inputs; use head=spp for other sizes")
    params = macs = acts = 0
    channels = 3
    for layer in spec.layers:
        if isinstance(layer, Conv):
            out = scale_channels(layer.out, width)
            h, w = (out_size(a, layer.k, layer.s, layer.p) for a in (h, w))
            weights = out * (channels // layer.groups) * layer.k * layer.k
            params += weights + (2 * out if batch_norm else out)  # BN's scale + shift replace the bias
            macs += weights * h * w
            acts += out * h * w
            channels = out
        elif isinstance(layer, Pool):
            h, w = (out_size(a, layer.k, layer.s, 0, layer.ceil) for a in (h, w))
        if h < 1 or w < 1:
            raise ValueError(f"{name}: input too small (empty map after {layer.name})")
    bins = sum(n * n for n in levels) if head == "spp" else 36
    fc = scale_width(4096, width)
    for fan_in, fan_out in ((channels * bins, fc), (fc, fc), (fc, num_classes)):
        params += fan_in * fan_out + fan_out
        macs += fan_in * fan_out
        acts += fan_out
    return {"params": params, "macs": macs, "acts": acts}


def golden_configs() -> list[dict]:
    """Golden-file configs: paper scale (all models, both heads) and the embedded recipe (Table 1 nets: width
    0.125, 112 px, 10 classes, BN after every conv; ``conf/scale/embedded.yaml``)."""
    configs = []
    for name in sorted(BACKBONES):
        for head in ("spp", "nospp"):
            size = get_spec(name).input_size
            configs.append(dict(model=name, head=head, width=1.0, input_size=size, num_classes=1000, batch_norm=False))
    for name in TABLE1_MODELS:
        for head in ("spp", "nospp"):
            configs.append(dict(model=name, head=head, width=0.125, input_size=112, num_classes=10, batch_norm=True))
    for config in configs:
        config["levels"] = [6, 3, 2, 1] if config["head"] == "spp" else [6]
    return configs


def golden_table() -> list[dict]:
    """Every golden config with its analytic ``params``, ``macs`` and ``acts``."""
    rows = []
    for config in golden_configs():
        counts = complexity(
            config["model"],
            config["head"],
            tuple(config["levels"]),
            config["num_classes"],
            config["width"],
            config["input_size"],
            batch_norm=config["batch_norm"],
        )
        rows.append({**config, **counts})
    return rows


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    rows = ",\n".join(f"  {json.dumps(row)}" for row in payload["models"])
    head = {k: v for k, v in payload.items() if k != "models"}
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(head, indent=1)[:-2] + ',\n "models": [\n' + rows + "\n ]\n}\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: print the complexity table; ``--write`` also stores the golden JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN_PATH}")
    parser.add_argument("--out", type=Path, default=GOLDEN_PATH, help="golden JSON path")
    args = parser.parse_args(argv)
    rows = golden_table()
    for r in rows:
        print(
            f"{r['model']:10s} {r['head']:6s} w={r['width']:<5} in={r['input_size']:<3} bn={int(r['batch_norm'])} "
            f"classes={r['num_classes']:<4} "
            f"params={r['params'] / 1e6:8.3f}M  macs={r['macs'] / 1e9:7.3f}G  acts={r['acts'] / 1e6:6.3f}M"
        )
    if args.write:
        note = "conv+fc only; macs = multiply-accumulates (FLOPs ~ 2*macs); acts = conv/fc output elements"
        _write_json(args.out, {"schema": 1, "note": note, "models": rows})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
