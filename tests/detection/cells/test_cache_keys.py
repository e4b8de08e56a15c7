"""Every cache key derives from every parameter that changes the cached content: change any one of them (each leaf
of the config groups the cached stage reads) and the key changes."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from sppnet_exp.config import compose_config
from sppnet_exp.detection.cells.common import conv5_tag, data_tag, window_tag
from sppnet_exp.detection.proposals.cache import ProposalCache

DATA_ID = ["data.name", "data.root", "data.gen", "data.classes", "data.max_images"]


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf under ``node`` that is not an interpolation (those follow their source)."""
    if isinstance(node, DictConfig):
        for key in node:
            if OmegaConf.is_interpolation(node, key):
                continue
            yield from _leaves(node[key], f"{prefix}.{key}")
    elif isinstance(node, ListConfig):
        yield prefix, list(node)
    else:
        yield prefix, node


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 0.125
    if isinstance(value, str):
        return value + "_changed"
    if isinstance(value, list):
        return [*value, value[-1] if value else 1]
    if value is None:
        return "1"  # a value every optional node takes: a typed int or float converts it, a path or a name keeps it
    raise TypeError(value)


def _cfg(*extra: str, experiment: str = "table9/spp_5scale") -> DictConfig:
    cfg = compose_config("detect", ["logger=none", f"experiment={experiment}", *extra])
    OmegaConf.set_struct(cfg, False)
    return cfg


# Leaves that change no cached content: the pretrained net's label (its weights come from its experiment and
# overrides) and whether a missing net may be trained.
NOT_CONTENT = {"pretrained.model", "pretrained.train_if_missing"}
# Leaves whose changed value must be one of a few names.
CHANGED: dict[str, Callable[[Any], Any]] = {
    "pretrained.experiment": lambda v: "table2/zf5_nospp",
    "pretrained.overrides": lambda v: [*v, "scale.max_epochs=3"],
    "pretrained.net": lambda v: [*v, "scale.max_epochs=3"],
}


def _check(key: Callable[[DictConfig], Any], roots: list[str], cfg: DictConfig, skip: set[str] = frozenset()) -> int:
    """Perturb every leaf under ``roots`` in turn; the key must change each time. Returns the leaves checked."""
    base = key(cfg)
    n = 0
    for root in roots:
        node = OmegaConf.select(cfg, root)
        if isinstance(node, DictConfig):
            leaves = list(_leaves(node, root))
        else:
            leaves = [(root, OmegaConf.to_container(node) if isinstance(node, ListConfig) else node)]
        for path, value in leaves:
            if path in NOT_CONTENT or path in skip:
                continue
            other = copy.deepcopy(cfg)
            OmegaConf.update(other, path, CHANGED.get(path, _changed)(value), merge=False)
            assert key(other) != base, f"changing {path} ({value!r}) left the key unchanged"
            n += 1
    return n


def test_conv5_key_follows_the_net_and_the_data() -> None:
    cfg = _cfg()
    n = _check(conv5_tag, ["pretrained", *DATA_ID], cfg, skip={"pretrained.warp_size"})  # R-CNN's, not conv5's
    assert n >= 10
    # where the pretrained net comes from (scale.pretrain names a train scale and dataset)
    for path, value in (("scale.pretrain.scale", "paper"), ("scale.pretrain.data", "imagenet")):
        other = copy.deepcopy(cfg)
        OmegaConf.update(other, path, value, merge=False)
        other.pretrained.overrides = ["data.root=/data/ILSVRC2012"] if value == "imagenet" else []
        assert conv5_tag(other) != conv5_tag(cfg), path
    # a change of the pretrained net's own training recipe (not its detection config) reaches the key too
    moved = _cfg("pretrained.overrides=['scale.max_epochs=3']")
    assert conv5_tag(moved) != conv5_tag(cfg)
    # the extraction's precision: a bf16 map is another map (the default float32 keeps the key it had)
    bf16 = copy.deepcopy(cfg)
    OmegaConf.update(bf16, "trainer.precision", "bf16-mixed", merge=False)
    assert conv5_tag(bf16) != conv5_tag(cfg) and bf16.fingerprint != cfg.fingerprint
    # and what must not key it: settings that do not change a map
    for path, value in (("svm.C", 0.5), ("test.nms", 0.4), ("features.workers", 3), ("rows", ["pool5"])):
        other = copy.deepcopy(cfg)
        OmegaConf.update(other, path, value, merge=False)
        assert conv5_tag(other) == conv5_tag(cfg), path


@pytest.mark.parametrize("which", ["pre", "ft"])
def test_rcnn_window_key_follows_the_net_the_windows_and_the_warp(which: str) -> None:
    cfg = _cfg(experiment="table9/rcnn_alexnet")

    def key(c: DictConfig) -> str:
        size = int(OmegaConf.select(c, "detector.input_size") or 224)
        return window_tag(c, which, size, str(c.detector.geometry))

    roots = ["pretrained", *DATA_ID, "proposals", "detector.padding"]
    if which == "ft":  # the run's own fine-tuned net: everything in the run's identity
        roots += ["scale.rcnn_finetune", "seed", "finetune_precision"]
    # AlexNet's pretrained group names no experiment: its net is its `net` list, whatever experiment it starts from
    assert _check(key, roots, cfg, skip={"pretrained.experiment"}) >= 12


def test_run_dir_key_follows_every_stage_setting() -> None:
    """The run dir (fine-tuned weights, SVMs, regressors, detections) is keyed by the run fingerprint."""
    cfg = _cfg()
    roots = ["detector", "scale", "svm", "test", "proposals", "pretrained", *DATA_ID, "rows", "seed"]
    roots.append("finetune_precision")
    assert _check(lambda c: c.fingerprint, roots, cfg) > 60


def test_proposal_cache_key_follows_its_computation() -> None:
    """Selective search's cached boxes depend on the data, the mode and the compute settings (read-time filters
    such as min_size and max_proposals are applied when reading, so they do not key it)."""
    cfg = _cfg()

    def key(c: DictConfig) -> tuple[str, str]:
        p = c.proposals
        cache = ProposalCache("/tmp/unused", f"ss_{p.mode}", {"max_side": p.get("max_side"), "seed": 0})
        return data_tag(c), str(cache.dir)

    assert _check(key, [*DATA_ID, "proposals.max_side"], cfg) >= 6
    for mode in ("quality", "single", "rcnn"):  # the mode is one of a few names
        other = copy.deepcopy(cfg)
        other.proposals.mode = mode
        assert key(other) != key(cfg), mode
