"""The typed settings of the detection stages: each default is written here once.

Each dataclass is also the Hydra schema of its config node (registered by :func:`sppnet_exp.config.register_schemas`
and named in the yaml defaults lists as ``/schema/<name>@<node>``): the yaml files state only what differs from
these defaults or follows the scale, a misspelt key or a wrong type is refused when the config is composed, and the
stage code receives the dataclass itself (``OmegaConf.to_object(cfg.svm)`` is an :class:`SVMConfig`).

========================  ==================  ==========================================================
schema                    config node         read by
========================  ==================  ==========================================================
``schema/svm``            ``svm``             :mod:`.linear.svm`, :mod:`.linear.hard_negatives`
``schema/test``           ``detector.test``   :mod:`.evaluation.protocols` (SPP-net's / R-CNN's rules)
``schema/proposals``      ``proposals``       :func:`.proposals.sources.get_proposals`
``schema/pooling``        ``detector.pooling`` :class:`.features.pooling.PoolingSpec` (SPP cells, timing)
========================  ==================  ==========================================================

This module imports nothing but the standard library, so ``import sppnet_exp`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from sppnet_exp.models.window_rules import MAPPING_RULES

__all__ = [
    "CACHE_DTYPES",
    "MAPPING_RULES",
    "NEG_PRUNE",
    "PROPOSAL_SOURCES",
    "PROTOCOLS",
    "SCALE_RULES",
    "PoolingRules",
    "ProposalSettings",
    "SVMConfig",
    "TestProtocol",
]

NEG_PRUNE = ("overlap", "conv5_box", "none")
CACHE_DTYPES = ("float32", "float16")
PROTOCOLS = ("spp", "rcnn")
PROPOSAL_SOURCES = ("selective_search", "rcnn_mat", "array_dir")
SCALE_RULES = ("paper", "authors")


def _one_of(who: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{who} must be one of {list(allowed)}, got {value!r}")


# Optional[...] rather than "X | None": OmegaConf reads these annotations to type the config nodes.
@dataclass
class SVMConfig:
    """Constants of ``spp_train.m`` (identical to ``rcnn_train.m``) and the paper's 70% negative pruning.

    ``neg_prune``: ``overlap`` (the paper: a negative overlapping another kept negative by more than
    ``neg_overlap`` is dropped), ``conv5_box`` (the authors' code: one negative per distinct conv5 window; SPP
    only) or ``none`` (R-CNN keeps every negative). ``tol`` 0.1 is liblinear's default stopping tolerance for
    ``-s 3`` (what the authors ran; sklearn's own default is 1e-4). ``hard_epochs`` > 1 repeats the mining pass
    (the authors use 1). ``max_negatives`` bounds each class's negative cache (None: unbounded, as the authors'):
    past it the easiest cached negatives (lowest score under the current model) are dropped first and counted;
    ``cache_dtype`` "float16" halves its memory (the liblinear fit still sees float64).
    """

    C: float = 1e-3
    pos_weight: float = 2.0
    bias_mult: float = 10.0
    target_norm: float = 20.0
    neg_iou: float = 0.3
    hard_thresh: float = -1.0001
    evict_thresh: float = -1.2
    retrain_limit: int = 2000
    neg_prune: str = "overlap"
    neg_overlap: float = 0.7
    hard_epochs: int = 1
    norm_images: int = 200
    norm_boxes: int = 200
    seed: int = 3
    max_iter: int = 10000
    tol: float = 0.1
    max_negatives: Optional[int] = None  # noqa: UP045
    cache_dtype: str = "float32"

    def __post_init__(self) -> None:
        _one_of("svm.neg_prune", self.neg_prune, NEG_PRUNE)
        _one_of("svm.cache_dtype", self.cache_dtype, CACHE_DTYPES)

    @property
    def neg_overlap_prune(self) -> float | None:
        """The overlap above which a negative is pruned (None: no overlap pruning)."""
        return float(self.neg_overlap) if self.neg_prune == "overlap" else None


@dataclass
class TestProtocol:
    """A method's test rules (:mod:`.evaluation.protocols`): ``protocol`` spp / rcnn, SPP-net's ``score_thresh``
    floor (None: none), the NMS overlap, the per-image cap, whether the evaluation applies NMS again (SPP-net) and
    R-CNN's per-class cap over the set (``max_per_set`` windows per test image and class). The defaults are
    SPP-net's ``spp_test.m``."""

    __test__ = False  # not a pytest class

    protocol: str = "spp"
    score_thresh: Optional[float] = -1.5  # noqa: UP045
    nms: float = 0.3
    max_per_image: int = 100
    eval_nms: bool = True
    max_per_set: int = 40

    def __post_init__(self) -> None:
        _one_of("detector.test.protocol", self.protocol, PROTOCOLS)


@dataclass
class ProposalSettings:
    """Where a cell's region proposals come from: ``selective_search`` (OpenCV ximgproc, ``mode`` fast/quality,
    run on the image shrunk to ``max_side``; computed once and cached), ``rcnn_mat`` (R-CNN's published .mat at
    ``path``: one file, or ``{trainval: ..., test: ...}``; ``layout`` auto / rcnn / fast_rcnn) or ``array_dir``
    (``path/<image_id>.npy|.txt``); then boxes with a side under ``min_size`` are dropped and at most
    ``max_proposals`` kept (None: all)."""

    source: str = "selective_search"
    path: Any = None
    layout: str = "auto"
    mode: str = "fast"
    max_side: Optional[int] = None  # noqa: UP045
    min_size: int = 0
    max_proposals: Optional[int] = None  # noqa: UP045

    def __post_init__(self) -> None:
        _one_of("proposals.source", self.source, PROPOSAL_SOURCES)

    def path_for(self, split: str) -> Any:
        """The path of ``split``'s boxes: ``path[split]`` when ``path`` is given per split."""
        return self.path.get(split) if isinstance(self.path, dict) else self.path


@dataclass
class PoolingRules:
    """SPP-net's window -> conv5 rules (Appendix A; ``spm_pool_caffe_mex.cpp``, ``spm_expected_scale.m``).

    ``mapping``: ``receptive_field`` (the default; what Appendix A asks for with the released ZF-5's paddings, and
    what the authors' mex computes), ``paper`` (the formula as printed) or ``paper_offset``; ``offset``: the
    authors' shrink per side in pixels (receptive-field rule only). ``scale_rule``: ``paper`` (the scale whose
    scaled window is closest to ``target_size``^2, section 4.1) or ``authors`` (round(sz_conv * S * min_side /
    sqrt(area))); ``target_size``: the paper's 224.
    """

    mapping: str = "receptive_field"
    offset: float = 6.5
    scale_rule: str = "paper"
    target_size: int = 224

    def __post_init__(self) -> None:
        _one_of("detector.pooling.mapping", self.mapping, MAPPING_RULES)
        _one_of("detector.pooling.scale_rule", self.scale_rule, SCALE_RULES)


SCHEMAS: dict[str, type] = {
    "svm": SVMConfig,
    "test": TestProtocol,
    "proposals": ProposalSettings,
    "pooling": PoolingRules,
}
