"""Batched window SPP equals crop + SpatialPyramidPooling, exactly, for every window shape and level order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sppnet_exp.detection.features.window_spp import WindowSPP, _plan, window_spp, window_spp_reference
from sppnet_exp.models import spp_bins

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_cells(rng: np.random.Generator, k: int, h: int, w: int) -> np.ndarray:
    """Random windows plus the special ones: single cells, the full map, rows/columns, windows smaller than 6."""
    ww, hh = rng.integers(1, w + 1, k), rng.integers(1, h + 1, k)
    left, top = rng.integers(0, w - ww + 1), rng.integers(0, h - hh + 1)
    cells = np.stack([left, top, left + ww - 1, top + hh - 1], 1)
    special = [
        [0, 0, 0, 0],
        [w - 1, h - 1, w - 1, h - 1],
        [0, 0, w - 1, h - 1],
        [0, 1, w - 1, 1],
        [2, 0, 2, h - 1],
        [1, 1, min(w - 1, 3), min(h - 1, 5)],
        [w - 5, h - 2, w - 1, h - 1],
    ]
    return np.concatenate([cells, np.array(special)]).astype(np.int64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("levels", [(1, 2, 3, 6), (6, 3, 2, 1), (4, 3, 2, 1), (5,), (7, 2), (2, 6, 2)])
def test_equals_reference_fp32(levels: tuple[int, ...], device: str) -> None:
    rng = np.random.default_rng(sum(levels))
    fmap = torch.randn(5, 19, 23, generator=torch.Generator().manual_seed(0)).to(device)  # negatives included
    cells = random_cells(rng, 60, 19, 23)
    got = window_spp(fmap, cells, levels, chunk=16)
    ref = window_spp_reference(fmap, cells, levels)
    assert got.shape == (len(cells), 5 * sum(n * n for n in levels))
    assert got.dtype == torch.float32 and got.device == fmap.device
    assert torch.equal(got, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_equals_reference_fp16_and_tiny_maps(device: str) -> None:
    rng = np.random.default_rng(3)
    for h, w in [(1, 1), (1, 9), (7, 1), (4, 5), (43, 57)]:
        fmap = torch.relu(torch.randn(8, h, w, generator=torch.Generator().manual_seed(h * w))).half().to(device)
        cells = random_cells(rng, 40, h, w) if h >= 2 and w >= 5 else np.array([[0, 0, w - 1, h - 1]])
        got = window_spp(fmap, torch.as_tensor(cells), (1, 2, 3, 6))
        assert got.dtype == torch.float16
        assert torch.equal(got, window_spp_reference(fmap.float(), cells).half())


def test_grouped_levels_equal_direct_levels() -> None:
    """Levels 3, 2, 1 grouped from 6 equal the same levels pooled directly from the table."""
    assert _plan((1, 2, 3, 6)) == {6: 6, 3: 6, 2: 6, 1: 2}
    assert _plan((4, 3, 2, 1)) == {4: 4, 3: 3, 2: 4, 1: 2}
    rng = np.random.default_rng(4)
    fmap = torch.randn(3, 31, 29)
    cells = random_cells(rng, 80, 31, 29)
    grouped = window_spp(fmap, cells, (6, 3, 2, 1))
    direct = torch.cat([window_spp(fmap, cells, (n,)) for n in (6, 3, 2, 1)], 1)
    assert torch.equal(grouped, direct)


def test_group_rule_identity_on_bins() -> None:
    """The union of g consecutive bins of n = g*m is bin j of m, for every width (the proof in the docstring)."""
    for a in range(1, 80):
        for m, g in [(1, 2), (1, 6), (2, 3), (3, 2), (2, 2)]:
            fine = spp_bins(a, m * g)
            for j, (start, end) in enumerate(spp_bins(a, m)):
                group = fine[j * g : (j + 1) * g]
                assert group[0][0] == start and group[-1][1] == end
                assert all(group[i][1] >= group[i + 1][0] for i in range(g - 1))


def test_chunking_out_and_reuse() -> None:
    rng = np.random.default_rng(5)
    fmap = torch.randn(4, 12, 17).half()
    cells = random_cells(rng, 25, 12, 17)
    ref = window_spp_reference(fmap.float(), cells)
    pooler = WindowSPP((1, 2, 3, 6), chunk=3)
    out = torch.full((len(cells), pooler.output_dim(4)), float("nan"))
    assert pooler(fmap, cells, out=out) is out
    assert torch.equal(out, ref)  # fp16 max, written as fp32
    assert torch.equal(pooler(fmap, cells[:7]), ref[:7].half())  # scratch reused with fewer windows
    bigger = torch.randn(4, 20, 30)
    assert torch.equal(pooler(bigger, cells), window_spp_reference(bigger, cells))  # scratch grows


def test_empty_and_bad_input() -> None:
    fmap = torch.randn(2, 5, 6)
    assert window_spp(fmap, np.zeros((0, 4), np.int64)).shape == (0, 2 * 50)
    with pytest.raises(ValueError, match="outside"):
        window_spp(fmap, np.array([[0, 0, 6, 4]]))
    with pytest.raises(ValueError, match="left>right"):
        window_spp(fmap, np.array([[3, 0, 2, 4]]))
    with pytest.raises(ValueError, match="integer"):
        window_spp(fmap, np.array([[0.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="C x H x W"):
        window_spp(fmap[None], np.array([[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="out must be"):
        window_spp(fmap, np.array([[0, 0, 1, 1]]), out=torch.empty(1, 7))
