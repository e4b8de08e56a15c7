"""Tests of the paper's augmentation, the eval views, normalisation and the samplers."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from sppnet_exp.data.samplers import (
    EpochShuffleSampler,
    SizeBucketBatchSampler,
    UnrepeatedDistributedSampler,
    unrepeated_shard,
)
from sppnet_exp.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PCA_EIGVAL,
    PCA_EIGVEC,
    EvalTransform,
    TrainTransform,
    five_positions,
    normalize,
    pca_lighting,
    resize_short,
    resized_size,
)


def _img(h: int = 40, w: int = 60, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def test_resized_size_and_resize_short() -> None:
    assert resized_size(40, 60, 32) == (32, 48)
    assert resized_size(60, 40, 32) == (48, 32)
    assert resized_size(375, 500, 256) == (256, 341)
    out = resize_short(_img(40, 60), 32)
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 48)
    assert resize_short(_img(32, 48), 32).shape == (3, 32, 48)


def test_five_positions_are_corners_and_centre() -> None:
    assert five_positions(30, 50, 20) == [(0, 0), (0, 30), (10, 0), (10, 30), (5, 15)]


def test_train_five_crop_is_one_of_the_five_crops_of_the_whole_resized_image() -> None:
    img = _img(40, 70)
    tf = TrainTransform(resize=32, crop=24, train_crop="five", flip=False, color=0.0)
    resized = resize_short(img, 32)
    candidates = [normalize(resized[:, t : t + 24, s : s + 24]) for t, s in five_positions(32, 56, 24)]
    seen = set()
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        out = tf(img, generator=g)
        assert out.shape == (3, 24, 24) and out.dtype == torch.float32
        matches = [k for k, c in enumerate(candidates) if torch.equal(out, c)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 1, 2, 3, 4}


def test_train_flip_and_random_crop() -> None:
    img = _img(32, 32)
    tf = TrainTransform(resize=32, crop=32, train_crop="five", flip=True, color=0.0)
    plain, flipped = normalize(img), normalize(img.flip(-1))
    g = torch.Generator().manual_seed(0)
    outs = [tf(img, generator=g) for _ in range(40)]
    n_flip = sum(torch.equal(o, flipped) for o in outs)
    n_plain = sum(torch.equal(o, plain) for o in outs)
    assert n_flip + n_plain == 40 and 5 < n_flip < 35
    rnd = TrainTransform(resize=32, crop=16, train_crop="random", flip=False, color=0.0)
    lefts = set()
    resized = resize_short(_img(32, 64), 32)
    for _ in range(30):
        out = rnd(_img(32, 64), generator=g)
        hits = [
            (t, s)
            for t in range(17)
            for s in range(49)
            if torch.equal(out, normalize(resized[:, t : t + 16, s : s + 16]))
        ]
        assert hits
        lefts.add(hits[0][1])
    assert len(lefts) > 5


def test_pca_lighting_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 2, 2)
    shifts = torch.stack([pca_lighting(x, 0.1, g)[:, 0, 0] for _ in range(4000)])
    # The shift is constant over pixels and follows N(0, V diag((0.1 lambda)^2) V^T).
    out = pca_lighting(x, 0.1, g)
    assert torch.allclose(out, out[:, :1, :1].expand_as(out))
    expected = PCA_EIGVEC @ torch.diag((0.1 * PCA_EIGVAL) ** 2) @ PCA_EIGVEC.T
    cov = torch.cov(shifts.T)
    assert shifts.mean(0).abs().max() < 0.003
    assert torch.allclose(cov, expected, atol=5e-5, rtol=0.15)
    assert torch.equal(pca_lighting(x, 0.0, g), x)


def test_normalisation() -> None:
    img = torch.zeros(3, 2, 2, dtype=torch.uint8)
    img[0], img[1], img[2] = 255, 128, 0
    out = normalize(img)
    for c, v in enumerate((255, 128, 0)):
        assert torch.allclose(out[c], torch.full((2, 2), (v / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))


def test_ten_view_equals_manual_crops() -> None:
    img = _img(50, 80)
    out = EvalTransform("10view", resize=40, crop=32)(img)
    assert out.shape == (10, 3, 32, 32)
    resized = F.resize(img, [40, 64], antialias=True)
    boxes = [(0, 0), (0, 32), (8, 0), (8, 32), (4, 16)]
    manual = [resized[:, t : t + 32, s : s + 32] for t, s in boxes]
    manual += [m.flip(-1) for m in manual]
    assert torch.equal(out, normalize(torch.stack(manual)))


def test_center_and_full_views() -> None:
    img = _img(50, 80)
    center = EvalTransform("center", resize=40, crop=32)(img)
    resized = F.resize(img, [40, 64], antialias=True)
    assert center.shape == (1, 3, 32, 32)
    assert torch.equal(center[0], normalize(resized[:, 4:36, 16:48]))
    full = EvalTransform("full", resize=40, crop=32, full_resize=36)
    out = full(img)
    assert out.shape == (1, 3, 36, 58) and full.output_size(50, 80) == (36, 58)
    assert full(_img(80, 50)).shape == (1, 3, 58, 36)


def test_size_bucketing_groups_equal_sizes() -> None:
    sizes = [(4, 6), (6, 4), (4, 6), (4, 4), (4, 6), (6, 4), (4, 6)]
    sampler = SizeBucketBatchSampler(lambda: sizes, batch_size=2)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for b in batches:
        assert len(b) <= 2 and len({sizes[i] for i in b}) == 1
    assert len(sampler) == 4  # (4,4): 1 batch, (4,6): 2, (6,4): 1


def test_unrepeated_sharding_covers_each_index_once() -> None:
    n = 11
    shards = [unrepeated_shard(n, 2, r) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(n))
    assert list(UnrepeatedDistributedSampler(n, 2, 1)) == shards[1]
    sizes = [(4, 4 + i % 3) for i in range(n)]
    got = [i for r in range(2) for b in SizeBucketBatchSampler(sizes, 2, world_size=2, rank=r) for i in b]
    assert sorted(got) == list(range(n))


def test_train_sampler_set_epoch() -> None:
    s = EpochShuffleSampler(20, seed=3)
    e0 = list(s)
    assert sorted(e0) == list(range(20)) and list(s) == e0
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e1) == list(range(20)) and e1 != e0
    assert list(EpochShuffleSampler(20, seed=4)) != e0
