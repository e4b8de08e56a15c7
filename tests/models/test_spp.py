"""SpatialPyramidPooling vs an independent numpy reference of the authors' rule (floor start, ceil end)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sppnet_exp.models import SpatialPyramidPooling, spp_bins
from sppnet_exp.models.spp import cudaconvnet_window

LEVELS = (6, 4, 3, 2, 1)
NON_SQUARE = [(1, 64), (64, 1), (2, 3), (5, 13), (13, 10), (10, 13), (7, 40), (37, 19), (64, 6), (3, 50)]


def ref_edges(a: int, n: int) -> list[tuple[int, int]]:
    """Reference bins: [floor(i*a/n), ceil((i+1)*a/n)) written with plain integer arithmetic."""
    edges = []
    for i in range(n):
        start = (i * a) // n
        end = ((i + 1) * a + n - 1) // n
        edges.append((start, end))
    return edges


def ref_spp(x: np.ndarray, levels, mode: str) -> np.ndarray:
    """Numpy loops: each level n x n, flattened (C, row, col), levels concatenated in order."""
    batch, channels, height, width = x.shape
    parts = []
    for n in levels:
        out = np.zeros((batch, channels, n, n), dtype=x.dtype)
        for r, (r0, r1) in enumerate(ref_edges(height, n)):
            for c, (c0, c1) in enumerate(ref_edges(width, n)):
                cell = x[:, :, r0:r1, c0:c1]
                out[:, :, r, c] = cell.max(axis=(2, 3)) if mode == "max" else cell.mean(axis=(2, 3))
        parts.append(out.reshape(batch, -1))
    return np.concatenate(parts, axis=1)


def check(layer: SpatialPyramidPooling, h: int, w: int, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, h, w))
    got = layer(torch.from_numpy(x)).numpy()
    want = ref_spp(x, layer.levels, layer.mode)
    assert got.shape == (2, layer.output_dim(3))
    if layer.mode == "max":
        np.testing.assert_array_equal(got, want, err_msg=f"h={h} w={w}")
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"h={h} w={w}")


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_matches_reference_square(mode: str) -> None:
    rng = np.random.default_rng(0)
    layer = SpatialPyramidPooling(LEVELS, mode=mode)
    for a in range(1, 65):
        check(layer, a, a, rng)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_matches_reference_non_square(mode: str) -> None:
    rng = np.random.default_rng(1)
    layer = SpatialPyramidPooling(LEVELS, mode=mode)
    sizes = NON_SQUARE + [tuple(int(v) for v in rng.integers(1, 65, size=2)) for _ in range(20)]
    for h, w in sizes:
        check(layer, h, w, rng)


def test_spp_bins_rule() -> None:
    # Examples from the authors' code (facts Appendix A).
    assert spp_bins(13, 6) == [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13)]
    assert spp_bins(10, 6) == [(0, 2), (1, 4), (3, 5), (5, 7), (6, 9), (8, 10)]
    assert spp_bins(3, 6) == [(0, 1), (0, 1), (1, 2), (1, 2), (2, 3), (2, 3)]
    assert spp_bins(13, 2) == [(0, 7), (6, 13)]
    assert spp_bins(11, 4) == [(0, 3), (2, 6), (5, 9), (8, 11)]
    for n in range(1, 9):
        for a in range(1, 200):
            bins = spp_bins(a, n)
            assert bins == ref_edges(a, n)
            assert len(bins) == n and bins[0][0] == 0 and bins[-1][1] == a
            assert all(0 <= s < e <= a for s, e in bins)  # never empty
            assert all(bins[i + 1][0] <= bins[i][1] for i in range(n - 1))  # no gaps
    with pytest.raises(ValueError):
        spp_bins(0, 3)


def test_layout_and_level_order() -> None:
    channels, a = 2, 6
    x = torch.arange(channels * a * a, dtype=torch.float64).reshape(1, channels, a, a)
    out = SpatialPyramidPooling((6, 1))(x)
    # A 6x6 level on a 6x6 map is the identity: flattened (C, row, col) first, then the 1x1 level per channel.
    assert torch.equal(out[0, : channels * 36], x.flatten())
    assert torch.equal(out[0, channels * 36 :], x.amax(dim=(2, 3)).flatten())
    swapped = SpatialPyramidPooling((1, 6))(x)
    assert torch.equal(swapped[0, :channels], out[0, channels * 36 :])
    # Level 2 of a 4x4 map whose value encodes (c, row-block, col-block).
    y = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    for c in range(2):
        for r in range(2):
            for q in range(2):
                y[0, c, 2 * r : 2 * r + 2, 2 * q : 2 * q + 2] = 100 * c + 10 * r + q
    assert SpatialPyramidPooling((2,))(y)[0].tolist() == [0, 1, 10, 11, 100, 101, 110, 111]


def test_output_dim_and_validation() -> None:
    layer = SpatialPyramidPooling()
    assert layer.levels == (6, 3, 2, 1) and layer.num_bins == 50 and layer.output_dim(256) == 12800
    assert SpatialPyramidPooling((4, 3, 2, 1)).output_dim(256) == 7680
    for kwargs in ({"levels": ()}, {"levels": (0,)}, {"mode": "sum"}, {"impl": "caffe"}):
        with pytest.raises(ValueError):
            SpatialPyramidPooling(**kwargs)
    with pytest.raises(ValueError, match="N x C x H x W"):
        layer(torch.zeros(3, 13, 13))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_cudaconvnet_equals_adaptive_where_valid(mode: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 13, 13, dtype=torch.float64)
    paper = SpatialPyramidPooling((6, 3, 2, 1), mode=mode, impl="cudaconvnet")
    ours = SpatialPyramidPooling((6, 3, 2, 1), mode=mode)
    assert torch.allclose(paper(x), ours(x), rtol=0, atol=1e-14)
    # Paper's Fig. 4 / section 2.3 windows on 13x13: 6x6 k3 s2, 3x3 k5 s4, 2x2 k7 s6, 1x1 k13 s13.
    assert [cudaconvnet_window(13, n) for n in (6, 3, 2, 1)] == [(3, 2), (5, 4), (7, 6), (13, 13)]
    # Every (a, n) the sliding formulation accepts gives exactly the authors' bins.
    accepted = 0
    for n in (1, 2, 3, 4, 6):
        for a in range(1, 65):
            try:
                win, stride = cudaconvnet_window(a, n)
            except ValueError:
                continue
            accepted += 1
            assert [(i * stride, i * stride + win) for i in range(n)] == ref_edges(a, n)
            y = torch.randn(1, 2, a, a + n, dtype=torch.float64)
            if a + n in range(1, 65) and _accepts(a + n, n):
                layer = SpatialPyramidPooling((n,), mode=mode, impl="cudaconvnet")
                assert torch.allclose(layer(y), SpatialPyramidPooling((n,), mode=mode)(y), atol=1e-14)
    assert accepted > 100


def _accepts(a: int, n: int) -> bool:
    try:
        cudaconvnet_window(a, n)
    except ValueError:
        return False
    return True


def test_cudaconvnet_raises_where_invalid() -> None:
    layer = SpatialPyramidPooling((6, 3, 2, 1), impl="cudaconvnet")
    with pytest.raises(ValueError, match=r"a=10.*n=6.*impl=\"adaptive\""):
        layer(torch.randn(1, 2, 10, 10))  # paper formula: k2 s1 -> 9 bins
    with pytest.raises(ValueError, match=r"a=3.*n=6.*adaptive"):
        layer(torch.randn(1, 2, 3, 3))  # stride 0
    with pytest.raises(ValueError, match="a=10"):
        layer(torch.randn(1, 2, 13, 10))  # non-square, width invalid
    with pytest.raises(ValueError, match="a=14"):
        cudaconvnet_window(14, 6)  # 6 windows of k3 s2 that miss the last cell


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("hw", [(5, 7), (2, 3), (6, 6)])
def test_gradcheck(mode: str, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 2, *hw, dtype=torch.float64, requires_grad=True)
    layer = SpatialPyramidPooling((3, 2, 1), mode=mode)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-6)


def test_max_gradient_routes_to_argmax_cells() -> None:
    rng = np.random.default_rng(3)
    h, w, levels = 7, 5, (6, 3, 2, 1)
    x_np = rng.standard_normal((2, 3, h, w))
    weights = rng.standard_normal((2, 3 * sum(n * n for n in levels)))
    x = torch.from_numpy(x_np).requires_grad_(True)
    (SpatialPyramidPooling(levels)(x) * torch.from_numpy(weights)).sum().backward()
    want = np.zeros_like(x_np)
    k = 0
    for n in levels:
        for ch in range(3):
            for r0, r1 in ref_edges(h, n):
                for c0, c1 in ref_edges(w, n):
                    for b in range(2):
                        cell = x_np[b, ch, r0:r1, c0:c1]
                        i, j = np.unravel_index(np.argmax(cell), cell.shape)
                        want[b, ch, r0 + i, c0 + j] += weights[b, k]
                    k += 1
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-12, atol=1e-12)


def test_batch_independence() -> None:
    torch.manual_seed(0)
    layer = SpatialPyramidPooling()
    x = torch.randn(4, 3, 11, 9)
    batched = layer(x)
    single = torch.cat([layer(x[i : i + 1]) for i in range(4)])
    assert torch.equal(batched, single)
    y = x.clone()
    y[1:] = torch.randn(3, 3, 11, 9) * 100
    assert torch.equal(layer(y)[0], batched[0])
