"""Views pooled from feature maps (section 3.1.5, Table 4): window for window the crop test where the geometry allows,
the view counts, the mapping rules' cells next to a crop's own conv5, and the loaders of whole images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sppnet_exp.classification.map_views import MapViewSettings, MapViewTester
from sppnet_exp.data.batches import to_float
from sppnet_exp.data.transforms import EvalTransform
from sppnet_exp.models import build_model


def _unpadded(net: nn.Module) -> nn.Module:
    """The net with a trunk of two unpadded stride-2 convs (total stride 4): a crop's conv map is then exactly the
    whole image's map cut at the crop's cells when the crop starts on the stride's grid."""
    c = net.out_channels
    net.features = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(inplace=True), nn.Conv2d(8, c, 3, stride=2), nn.ReLU(inplace=True)
    )
    return net.eval()


def test_map_10view_equals_the_crop_10view_window_for_window() -> None:
    torch.manual_seed(0)
    net = _unpadded(build_model("zf5", head="spp", num_classes=5, width=0.125, input_size=48))
    # 64 x 80 at s = 64, 48-pixel views: the corners, centre and mirrored lefts are all multiples of 4
    img = torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)
    tester = MapViewTester(net, MapViewSettings(crop=48, ten_scale=64, full_scale=64, scales=None, mapping="crop"))
    with torch.no_grad():
        maps = tester.logits(img, "10view_maps")
        crops = net(to_float(EvalTransform("10view", resize=64, crop=48).views(img)))
        # ... and each window's pooled vector is the SPP of the crop's own conv map, bit for bit in float32 ULPs
        fmap = net.features(to_float(img[None]))[0]
        view = tester.views("10view_maps", 64, 80)[1]  # the top-right corner
        cells = tester.cells([view], fmap.shape[-2], fmap.shape[-1], 80)
        crop = img[:, view.top : view.top + 48, view.left : view.left + 48]
        own = net.pool(net.features(to_float(crop[None]))).flatten(1)
    assert maps.shape == crops.shape == (10, 5)
    torch.testing.assert_close(maps, crops, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tester.pool(fmap, cells), own, rtol=1e-5, atol=1e-6)


def test_the_views_of_a_crop_net_differ_from_crops_only_at_the_borders() -> None:
    """With the released nets' paddings the receptive-field rule (the default) takes at most one cell more or less
    per side than a crop's own conv5 map (ZF-5, the paper's 224 views at s = 256)."""
    net = build_model("zf5", head="spp", num_classes=5, width=0.125).eval()
    rf = MapViewTester(net, MapViewSettings())
    own = MapViewTester(net, MapViewSettings(mapping="crop"))
    h, w = 256, 341
    views = rf.views("10view_maps", h, w)
    mh, mw = net.feature_map_size(h, w)
    a, b = rf.cells(views, mh, mw, w), own.cells(views, mh, mw, w)
    assert (abs(a - b) <= 1).all() and (b[:, 2] - b[:, 0] + 1 == 13).all()  # a 224 crop of ZF-5: 13 x 13 cells


def test_view_counts_and_scores() -> None:
    net = build_model("overfeat7", head="spp", num_classes=4, width=0.125, input_size=112).eval()
    tester = MapViewTester(net, MapViewSettings(crop=112, ten_scale=128, full_scale=128, scales=None))
    assert tester.settings.scales == (112, 128, 150, 180, 224, 280)  # the paper's six scaled by 112 / 224
    img = torch.randint(0, 256, (3, 120, 160), dtype=torch.uint8)
    with torch.no_grad():
        counts = {v: tester.logits(img, v).shape[0] for v in ("10view_maps", "multiview", "multiview_full")}
        scores = tester.scores([img, img.flip(-1)], "multiview_full")
    assert counts == {"10view_maps": 10, "multiview": 96, "multiview_full": 98}
    assert scores.shape == (2, 4)
    torch.testing.assert_close(scores.sum(1), torch.ones(2))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="SPP head"):
        MapViewTester(build_model("zf5", head="nospp", num_classes=3, width=0.125), MapViewSettings())
    with pytest.raises(ValueError, match="eval.map.mapping"):
        MapViewSettings(mapping="nearest")
    with pytest.raises(ValueError, match="multi-view scales"):
        MapViewSettings(crop=224, scales=(200, 256))
