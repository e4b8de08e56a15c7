"""Window -> conv5 geometry: receptive fields from the layers, hand-worked mappings, box scaling, scale choice."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from sppnet_exp.detection.features.mapping import choose_scales, resized_hw, scale_boxes
from sppnet_exp.models import build_model
from sppnet_exp.models.geometry import RFGeometry, map_windows, receptive_field

ZF5 = RFGeometry(stride=16, offset0=21.0, size=139)
SCALES = (480, 576, 688, 874, 1200)


# --- receptive field -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # conv1 7/2 p1: c=2 j=2; pool 3/2: c=4 j=4; conv2 5/2 p0: c=12 j=8; pool 3/2: c=20 j=16 -> 1-based 21.
        ("zf5", RFGeometry(16, 21.0, 139)),
        # conv1 7/2 p0: c=3 j=2; pool 3/3: c=5 j=6; conv2 5 p2: c=5; pool 2/2: c=5+0.5*6=8 j=12 -> 9.
        # size 7 +2*2 +4*6 +1*6 = 41, then 3 (overfeat5) or 5 (overfeat7) 3x3 convs add 24 each.
        ("overfeat5", RFGeometry(12, 9.0, 113)),
        ("overfeat7", RFGeometry(12, 9.0, 161)),
        # conv1 11/4 p0: c=5 j=4; pool 3/2: c=9 j=8; conv2 5 p2: c=9; pool 3/2: c=17 j=16 -> 18; size 163.
        ("alexnet", RFGeometry(16, 18.0, 163)),
        # conv1 11/4 p2: c=3; conv2 5 p2; pool 3/2: c=7 j=8; conv3; pool 3/2: c=15 j=16 -> 16; size 131.
        ("convnet5", RFGeometry(16, 16.0, 131)),
    ],
)
def test_receptive_field_of_the_built_nets(name: str, expected: RFGeometry) -> None:
    model = build_model(name, width=0.125)
    geom = receptive_field(model.features)
    assert geom == expected
    assert geom.stride == model.feature_stride


def _linearised(features: nn.Sequential) -> nn.Sequential:
    """Same geometry with every path open: max pools -> avg pools, convs all-ones, no ReLU/LRN."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, m in features.named_children():
        if isinstance(m, nn.Conv2d):
            conv = nn.Conv2d(1, 1, m.kernel_size, m.stride, m.padding, bias=False)
            nn.init.ones_(conv.weight)
            layers[name] = conv
        elif isinstance(m, nn.MaxPool2d):
            layers[name] = nn.AvgPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
    return nn.Sequential(layers)


@pytest.mark.parametrize("name", ["zf5", "overfeat5", "alexnet"])
def test_receptive_field_matches_the_gradient_support(name: str) -> None:
    """The input pixels that reach an interior conv cell are exactly the computed window."""
    net = _linearised(build_model(name, width=0.125).features).double()
    geom = receptive_field(net)
    x = torch.zeros(1, 1, 400, 400, dtype=torch.float64, requires_grad=True)
    y = net(x)
    py, px = y.shape[-2] // 2, y.shape[-1] // 2
    y[0, 0, py, px].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    half = (geom.size - 1) / 2
    centre_y, centre_x = geom.offset0 - 1 + geom.stride * py, geom.offset0 - 1 + geom.stride * px  # 0-based
    assert (int(rows[0]), int(rows[-1])) == (centre_y - half, centre_y + half)
    assert (int(cols[0]), int(cols[-1])) == (centre_x - half, centre_x + half)


def test_receptive_field_rejects_anisotropic_and_empty_trunks() -> None:
    with pytest.raises(ValueError, match="differ"):
        receptive_field(nn.Sequential(nn.Conv2d(3, 4, (3, 5), stride=(1, 2))))
    with pytest.raises(ValueError, match="no Conv2d"):
        receptive_field(nn.Sequential(nn.ReLU()))


# --- map_windows -----------------------------------------------------------------------------------------------


def _scalar_rule(x1: float, x2: float, rule: str, geom: RFGeometry, size: int, offset: float = 6.5) -> tuple[int, int]:
    """One axis, written out with math.floor/ceil, 1-based cells as in the mex, returned 0-based."""
    s, o0 = geom.stride, geom.offset0
    if rule == "paper":
        o0 = s
    if rule in ("paper", "paper_offset"):
        first, last = math.floor((x1 - o0) / s) + 2, math.ceil((x2 - o0) / s)
    else:
        first = math.floor((x1 - o0 + offset) / s + 0.5) + 1
        last = math.ceil((x2 - o0 - offset) / s - 0.5) + 1
    if first > last:
        total = first + last
        first = last = int(total / 2)  # C division truncates toward zero
    return min(max(first, 1), size) - 1, min(max(last, 1), size) - 1


def test_authors_worked_example_100_300() -> None:
    """sppnet_facts 1.4: x in [100, 300] -> 1-based cells 6..18 with the authors' rule."""
    box = np.array([[100, 100, 300, 300]], dtype=np.float32)
    assert map_windows(box, "receptive_field", ZF5, 43, 57).tolist() == [[5, 5, 17, 17]]
    # paper: floor((100-21)/16)+1 = 5, ceil((300-21)/16)-1 = 17 (0-based): the same cells here.
    assert map_windows(box, "paper_offset", ZF5, 43, 57).tolist() == [[5, 5, 17, 17]]
    # The literal formula (detection_facts 3: 1-based 7..18) is rule "paper", the same as offset0 = S.
    assert map_windows(box, "paper", ZF5, 43, 57).tolist() == [[6, 6, 17, 17]]
    assert map_windows(box, "paper_offset", RFGeometry(16, 16.0, 139), 43, 57).tolist() == [[6, 6, 17, 17]]


def test_paper_rule_hand_worked_cases() -> None:
    boxes = np.array(
        [
            [53, 53, 181, 181],  # edges exactly on the centres of cells 2 and 10 -> strictly inside: 3..9
            [96, 96, 100, 100],  # tiny: left 5 > right 4 -> 1-based (6+5)/2 = 5 -> 0-based 4
            [300, 10, 400, 20],  # right of a 13x13 map: x clamps to 12; y: 0 > -1 -> mean 0 -> clamp -> 0
            [1, 1, 224, 224],  # the whole 224 input: floor(-20/16)+1 = -1 -> 0, ceil(203/16)-1 = 12
        ],
        dtype=np.float32,
    )
    got = map_windows(boxes, "paper_offset", ZF5, 13, 13)
    assert got.tolist() == [[3, 3, 9, 9], [4, 4, 4, 4], [12, 0, 12, 0], [0, 0, 12, 12]]
    assert got.dtype == np.int64


def test_receptive_field_rule_hand_worked_cases() -> None:
    boxes = np.array(
        [
            [53, 53, 181, 181],  # floor(38.5/16+.5)+1 = 3, ceil(153.5/16-.5)+1 = 11 (1-based) -> 2..10
            [90, 90, 92, 92],  # left 6 > right 5 -> 11/2 = 5 (1-based) -> 4
            [1, 1, 224, 224],  # floor(-13.5/16+.5)+1 = 0 -> clamp 1; ceil(196.5/16-.5)+1 = 13 -> full map
        ],
        dtype=np.float32,
    )
    assert map_windows(boxes, "receptive_field", ZF5, 13, 13).tolist() == [[2, 2, 10, 10], [4, 4, 4, 4], [0, 0, 12, 12]]


@pytest.mark.parametrize("rule", ["paper", "paper_offset", "receptive_field"])
@pytest.mark.parametrize("geom", [ZF5, RFGeometry(12, 9.0, 113)])
def test_map_windows_vectorised_equals_scalar(rule: str, geom: RFGeometry) -> None:
    rng = np.random.default_rng(1)
    map_h, map_w = 30, 41
    x1 = rng.uniform(-20, 700, 500)
    y1 = rng.uniform(-20, 500, 500)
    boxes = np.stack([x1, y1, x1 + rng.uniform(0, 300, 500), y1 + rng.uniform(0, 300, 500)], 1)
    boxes[:50] = np.round(boxes[:50])  # integer coordinates hit the floor/ceil edges
    got = map_windows(boxes, rule, geom, map_h, map_w)
    for k, (a, b, c, d) in enumerate(boxes):
        assert tuple(got[k, [0, 2]]) == _scalar_rule(a, c, rule, geom, map_w)
        assert tuple(got[k, [1, 3]]) == _scalar_rule(b, d, rule, geom, map_h)
    assert (got[:, 0] <= got[:, 2]).all() and (got[:, 1] <= got[:, 3]).all()
    assert got.min() >= 0 and (got[:, [0, 2]] < map_w).all() and (got[:, [1, 3]] < map_h).all()


def test_paper_rule_keeps_cells_with_centres_strictly_inside() -> None:
    rng = np.random.default_rng(2)
    x1 = rng.uniform(40, 300, 300)
    x2 = x1 + rng.uniform(2 * 16, 300, 300)
    boxes = np.stack([x1, x1, x2, x2], 1)
    cells = map_windows(boxes, "paper_offset", ZF5, 100, 100)
    centre = lambda c: ZF5.offset0 + ZF5.stride * c  # noqa: E731  (1-based pixel centre of 0-based cell c)
    assert (centre(cells[:, 0]) > x1).all() and (centre(cells[:, 0] - 1) <= x1).all()
    assert (centre(cells[:, 2]) < x2).all() and (centre(cells[:, 2] + 1) >= x2).all()


def test_map_windows_empty_and_bad_input() -> None:
    assert map_windows(np.zeros((0, 4)), "paper_offset", ZF5, 5, 5).shape == (0, 4)
    with pytest.raises(ValueError, match="rule"):
        map_windows(np.zeros((1, 4)), "roi", ZF5, 5, 5)
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        map_windows(np.zeros((2, 3)), "paper_offset", ZF5, 5, 5)


# --- scaling and scale choice ------------------------------------------------------------------------------------


def test_scale_boxes_and_resized_hw() -> None:
    boxes = np.array([[1, 1, 375, 500], [100, 50, 200, 300]], dtype=np.float32)
    out = scale_boxes(boxes, 375, 688)
    np.testing.assert_allclose(out[0], [1, 1, 688, 1 + 499 * 687 / 374])
    np.testing.assert_allclose(out[1], (boxes[1] - 1) * 687 / 374 + 1)
    assert resized_hw(375, 500, 688) == (688, 917)  # 500 * 688 / 375 = 917.33
    assert resized_hw(500, 375, 688) == (917, 688)
    assert resized_hw(100, 150, 5) == (5, 8)  # 7.5 rounds half up
    assert resized_hw(64, 64, 32) == (32, 32)


def test_choose_scales_worked_example() -> None:
    """min side 375, 100x100 box: authors expected round(208*375/100) = 780 -> 688 (sppnet_facts 1.3).

    Paper: side 100*s/375 -> areas 16384, 23593, 33660, 54321, 102400 vs 224^2 = 50176 -> 874.
    """
    box = np.array([[1, 1, 100, 100]], dtype=np.float32)
    assert SCALES[int(choose_scales(box, 500, 375, SCALES, "authors")[0])] == 688
    assert SCALES[int(choose_scales(box, 500, 375, SCALES, "paper")[0])] == 874


def test_choose_scales_ties_and_order() -> None:
    # authors: expected = round(208 * 400 / 160) = 520, equally far from 480 and 560 -> the smaller.
    box = np.array([[1, 1, 160, 160]], dtype=np.float32)
    assert choose_scales(box, 400, 400, (560, 480), "authors").tolist() == [1]
    # paper: a 1x1 image and box: scaled areas 49 and 1 are both 24 from 5^2 -> the smaller scale, in any order.
    one = np.array([[1, 1, 1, 1]], dtype=np.float32)
    assert choose_scales(one, 1, 1, (7, 1), "paper", target=5).tolist() == [1]
    assert choose_scales(one, 1, 1, (1, 7), "paper", target=5).tolist() == [0]
    # 112x112 and 224x224 boxes on a 224-short image: 448 and 224 give exactly 224^2.
    box = np.array([[1, 1, 112, 112], [1, 1, 224, 224]], dtype=np.float32)
    assert choose_scales(box, 224, 300, (224, 448, 672), "paper").tolist() == [1, 0]
    assert choose_scales(np.zeros((0, 4)), 10, 10, (224,)).shape == (0,)
    with pytest.raises(ValueError, match="rule"):
        choose_scales(box, 224, 300, (224,), "area")


def _mex_cells(box: np.ndarray, geom: RFGeometry, h: int, w: int, offset: float = 6.5) -> list[int]:
    """A port of the box arithmetic of the authors' ``spm_pool_caffe_mex.cpp`` (lines 111-143): 1-based cells,
    the left > right fix-up by C integer division, clamping to the map; returned 0-based."""
    left, right = _scalar_rule(box[0], box[2], "receptive_field", geom, w, offset)
    top, bottom = _scalar_rule(box[1], box[3], "receptive_field", geom, h, offset)
    return [left, top, right, bottom]


def test_default_mapping_equals_the_authors_mex_on_random_boxes() -> None:
    """The detection default (config and PoolingSpec) is the rule Appendix A asks for with ZF-5's paddings."""
    from sppnet_exp.config import compose_config
    from sppnet_exp.detection.cells.features import spp_spec
    from sppnet_exp.detection.features.pooling import PoolingSpec

    cfg = compose_config("detect", ["experiment=table9/spp_5scale", "logger=none"])
    net = build_model("zf5", width=0.25, input_size=112)
    spec = spp_spec(cfg, net)
    assert cfg.detector.pooling.mapping == "receptive_field" == spec.mapping_rule
    assert PoolingSpec(spec.geom, (1,), (100,)).mapping_rule == "receptive_field"
    assert spec.sz_conv == net.feature_map_size(112, 112)[0] == 6
    assert spp_spec(cfg, build_model("zf5")).sz_conv == 13  # the authors' sz_conv_standard at their 224 crop
    assert spp_spec(cfg, build_model("overfeat5", head="spp")).sz_conv == 18
    rng = np.random.default_rng(0)
    geom = receptive_field(build_model("zf5").features)
    for scale_hw in ((688, 917), (480, 640), (1200, 1600)):
        h, w = build_model("zf5").feature_map_size(*scale_hw)
        x1 = rng.uniform(1, scale_hw[1], 500)
        y1 = rng.uniform(1, scale_hw[0], 500)
        boxes = np.stack([x1, y1, rng.uniform(x1, scale_hw[1]), rng.uniform(y1, scale_hw[0])], 1)
        cells = map_windows(boxes, cfg.detector.pooling.mapping, geom, h, w, float(cfg.detector.pooling.offset))
        for b, c in zip(boxes, cells, strict=True):
            assert c.tolist() == _mex_cells(b, geom, h, w)
