"""The typed settings (sppnet_exp/detection/settings.py) are the config nodes' schemas: one default each, refused
keys and types at compose time, the stage code's own dataclasses."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict, fields

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from sppnet_exp.config import compose_config
from sppnet_exp.detection.features.pooling import PoolingSpec
from sppnet_exp.detection.settings import SCHEMAS, PoolingRules, ProposalSettings, SVMConfig, TestProtocol
from sppnet_exp.models import build_model
from sppnet_exp.models.geometry import receptive_field


def _detect(*overrides: str):
    return compose_config("detect", ["logger=none", *overrides])


def test_the_stage_code_receives_the_dataclasses_with_the_papers_constants() -> None:
    cfg = _detect("experiment=table9/spp_5scale")
    svm = OmegaConf.to_object(cfg.svm)
    assert isinstance(svm, SVMConfig)
    # detection_facts.md section 2: R-CNN's / SPP-net's SVM constants, and the paper's 70% pruning for SPP-net
    assert (svm.C, svm.pos_weight, svm.bias_mult, svm.target_norm) == (1e-3, 2.0, 10.0, 20.0)
    assert (svm.neg_iou, svm.hard_thresh, svm.evict_thresh, svm.tol) == (0.3, -1.0001, -1.2, 0.1)
    assert svm.neg_prune == "overlap" and svm.neg_overlap_prune == 0.7
    test = OmegaConf.to_object(cfg.test)
    assert test == TestProtocol(protocol="spp", score_thresh=-1.5, nms=0.3, max_per_image=100)
    assert isinstance(OmegaConf.to_object(cfg.proposals), ProposalSettings)
    assert OmegaConf.to_object(cfg.detector.pooling) == PoolingRules(target_size=int(cfg.scale.target_size))


def test_rcnn_cells_get_rcnns_rules_from_the_same_schemas() -> None:
    cfg = _detect("experiment=table9/rcnn_alexnet")
    test = OmegaConf.to_object(cfg.test)
    assert (test.protocol, test.score_thresh, test.max_per_set) == ("rcnn", None, 40)
    svm = OmegaConf.to_object(cfg.svm)
    assert svm.neg_prune == "none" and svm.neg_overlap_prune is None  # R-CNN keeps every negative


@pytest.mark.parametrize("override", ["svm.Cc=0.1", "detector.pooling.mapin=paper", "proposals.sorce=rcnn_mat"])
def test_a_misspelt_key_is_refused_when_composing(override: str) -> None:
    with pytest.raises(ConfigCompositionException, match="Could not override"):
        _detect("experiment=table9/spp_1scale", override)


@pytest.mark.parametrize("override", ["svm.C=abc", "test.max_per_image=many", "detector.pooling.offset=x"])
def test_a_wrong_type_is_refused_when_composing(override: str) -> None:
    with pytest.raises(ConfigCompositionException):
        _detect("experiment=table9/spp_1scale", override)


def test_a_wrong_choice_is_refused_when_the_stage_reads_it() -> None:
    cfg = _detect("experiment=table9/spp_1scale", "svm.neg_prune=sometimes", "detector.pooling.mapping=nearest")
    with pytest.raises(ValueError, match="svm.neg_prune must be one of"):
        OmegaConf.to_object(cfg.svm)
    with pytest.raises(ValueError, match="detector.pooling.mapping must be one of"):
        OmegaConf.to_object(cfg.detector.pooling)


def test_an_override_reaches_the_typed_object() -> None:
    cfg = _detect("experiment=table9/spp_1scale", "svm.C=0.01", "detector.pooling.scale_rule=authors")
    assert OmegaConf.to_object(cfg.svm).C == 0.01
    assert OmegaConf.to_object(cfg.detector.pooling).scale_rule == "authors"


def test_pooling_specs_take_their_rule_defaults_from_the_rules() -> None:
    """The spec built without rules (the benchmarks) and the spec of the default config agree."""
    net = build_model("zf5", head="spp", levels=(6, 3, 2, 1), width=0.25)
    geom = receptive_field(net.features)
    bare = PoolingSpec(geom, (6, 3, 2, 1), (688,))
    ruled = PoolingSpec.from_rules(geom, (6, 3, 2, 1), (688,), PoolingRules(), sz_conv=13)
    assert bare == ruled
    r = PoolingRules()
    assert (bare.mapping_rule, bare.scale_rule, bare.target, bare.offset) == (
        r.mapping,
        r.scale_rule,
        r.target_size,
        r.offset,
    )


def test_timing_cells_pool_with_the_spp_cells_rules_and_time_the_named_rcnn_net() -> None:
    spp = _detect("experiment=table9/spp_1scale")
    for table, model in (("table9", "alexnet"), ("table10", "zf5")):
        timing = _detect(f"experiment={table}/timing")
        assert OmegaConf.to_object(timing.detector.pooling) == OmegaConf.to_object(spp.detector.pooling)
        assert timing.detector.rcnn_pretrained.model == model


def test_every_schema_default_is_a_value_the_dataclass_accepts() -> None:
    for name, cls in SCHEMAS.items():
        obj = cls()
        assert OmegaConf.to_object(OmegaConf.structured(cls)) == obj, name
        assert [f.name for f in fields(cls)] == list(asdict(obj)), name


def test_the_settings_module_imports_no_numerics() -> None:
    code = "import sys, sppnet_exp.detection.settings; print(sorted({'numpy', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_wrong_choice_is_a_preflight_problem_naming_the_key() -> None:
    from sppnet_exp.engine.preflight import check_settings

    cfg = _detect("experiment=table9/spp_1scale", "svm.neg_prune=sometimes", "detector.test.protocol=dpm")
    problems = {p.key: p for p in check_settings(cfg)}
    assert set(problems) == {"svm.neg_prune", "detector.test.protocol"}
    assert "['overlap', 'conv5_box', 'none']" in problems["svm.neg_prune"].expected
    assert check_settings(_detect("experiment=table9/rcnn_alexnet")) == []
