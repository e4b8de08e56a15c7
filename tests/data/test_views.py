"""Table 4's view geometry (sppnet_exp/data/views.py): the 96-view count of section 3.1.5 and the 10 views."""

from __future__ import annotations

import pytest

from sppnet_exp.data.transforms import EvalTransform, resized_size
from sppnet_exp.data.views import MULTIVIEW_SCALES, multiview, nine_positions, ten_views


def test_the_papers_96_views() -> None:
    """18 views per scale, 6 at s = 224 (the shorter side equals the view): 5 x 18 + 6 = 96."""
    views = multiview(375, 500)
    assert len(views) == 96
    per_scale = {s: sum(v.scale == s for v in views) for s in MULTIVIEW_SCALES}
    assert per_scale == {224: 6, 256: 18, 300: 18, 360: 18, 448: 18, 560: 18}
    assert sum(v.flip for v in views) == 48 and {v.size for v in views} == {224}
    for v in views:  # every window inside its resized image
        h, w = resized_size(375, 500, v.scale)
        assert v.top >= 0 and v.top + v.size <= h and v.left >= 0 and v.left + v.size <= w
    assert len(multiview(500, 375)) == 96  # portrait: the same count


def test_coinciding_windows_count_once() -> None:
    assert nine_positions(224, 300, 224) == [(0, 38), (0, 0), (0, 76)]  # three along the longer side
    assert nine_positions(224, 224, 224) == [(0, 0)]  # a square at s = 224: one window
    assert len(multiview(400, 400)) == 5 * 18 + 2
    with pytest.raises(ValueError, match="smaller than the view"):
        nine_positions(200, 300, 224)


def test_ten_views_are_the_crops_of_the_10view_test() -> None:
    """The same windows the crop test takes (EvalTransform "10view"), in its order: corners, centre, then flipped."""
    import torch

    img = torch.randint(0, 256, (3, 150, 200), dtype=torch.uint8)
    crops = EvalTransform("10view", resize=128, crop=112).views(img)
    views = ten_views(150, 200, scale=128, crop=112)
    assert len(views) == 10 and [v.flip for v in views] == [False] * 5 + [True] * 5
    resized = EvalTransform("full", full_resize=128).views(img)[0]
    mirror = resized.flip(-1)
    for view, crop in zip(views, crops, strict=True):
        window = resized[:, view.top : view.top + 112, view.left : view.left + 112]
        torch.testing.assert_close(window.flip(-1) if view.flip else window, crop)
        if view.flip:  # the same pixels as the window at the mirrored position of the mirrored image
            left = view.mirrored_left(resized.shape[-1])
            torch.testing.assert_close(mirror[:, view.top : view.top + 112, left : left + 112], crop)
