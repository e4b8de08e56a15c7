"""Samplers: seeded epoch shuffling, un-repeated distributed sharding, size-bucketed batches (full view).

Training under DDP uses ``torch.utils.data.DistributedSampler`` (built by the data module); single-process
training uses :class:`EpochShuffleSampler`. Both have ``set_epoch``, which Lightning calls every epoch. Either is
wrapped in :class:`SeededIndices`, which hands each index to the dataset with the seed of its augmentation, so
the random crops, flips and lighting of an epoch depend on (seed, epoch, image) only, not on how many loader
workers or ranks drew them.
Evaluation shards without repetition: every sample is seen exactly once over all ranks (ranks may get one
batch more or less than each other, so evaluation steps must not run collectives per step)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of ``range(n)`` seeded by ``(seed, epoch)``; call ``set_epoch`` each epoch."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


AugIndex = tuple[int, int]  # (sample index, seed of its augmentation this epoch)


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index``'s augmentation in ``epoch`` of a run seeded ``seed``: distinct for every
    (epoch < 10^6, index < 2^31) of a seed; the generator's seeding scrambles neighbouring values."""
    return ((seed * 1_000_003 + epoch) * 2_147_483_659 + index) % 2**64


class SeededIndices(Sampler[AugIndex]):
    """Wrap an index sampler: yield ``(index, augmentation_seed(seed, epoch, index))``.

    Without it every loader worker draws augmentations from its own RNG stream (seeded by the worker id), so
    the same seed gives different crops with 0, 1 or 2 workers, or another number of GPUs; with it the crops
    of a sample are a function of (seed, epoch, index). ``set_epoch`` is forwarded to the inner sampler.
    """

    def __init__(self, sampler: Sampler[int], seed: int = 0) -> None:
        self.sampler, self.seed, self.epoch = sampler, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Select ``epoch``'s order (inner sampler) and augmentation seeds."""
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[AugIndex]:
        for index in self.sampler:
            yield index, augmentation_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return len(self.sampler)


def split_index(item: int | AugIndex) -> tuple[int, torch.Generator | None]:
    """``index`` or ``(index, seed)`` (from :class:`SeededIndices`) → (index, generator seeded so, or None)."""
    if isinstance(item, tuple):
        index, seed = item
        return int(index), torch.Generator().manual_seed(int(seed))
    return int(item), None


def unrepeated_shard(n: int, world_size: int = 1, rank: int = 0) -> list[int]:
    """Indices of ``range(n)`` for ``rank``: round-robin, each index on exactly one rank, none repeated."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} out of range for world size {world_size}")
    return list(range(rank, n, world_size))


class UnrepeatedDistributedSampler(Sampler[int]):
    """Sequential eval sampler over this rank's un-repeated shard (see :func:`unrepeated_shard`)."""

    def __init__(self, n: int, world_size: int = 1, rank: int = 0) -> None:
        self.indices = unrepeated_shard(n, world_size, rank)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SizeBucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose (resized) image sizes are identical, sharded round-robin over ranks.

    ``sizes`` is a sequence of ``(h, w)`` per sample, or a callable returning it (evaluated lazily on first
    use and cached). Buckets are visited in sorted size order and indices keep their order inside a bucket,
    so the batching is deterministic; each index appears in exactly one batch on exactly one rank.
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]] | Callable[[], Sequence[tuple[int, int]]],
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        self._sizes = sizes
        self.batch_size, self.world_size, self.rank = batch_size, world_size, rank
        self._batches: list[list[int]] | None = None

    def _all_batches(self) -> list[list[int]]:
        sizes = self._sizes() if callable(self._sizes) else self._sizes
        buckets: dict[tuple[int, int], list[int]] = {}
        for i, size in enumerate(sizes):
            buckets.setdefault((int(size[0]), int(size[1])), []).append(i)
        batches = []
        for key in sorted(buckets):
            idx = buckets[key]
            batches.extend(idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size))
        return batches

    def batches(self) -> list[list[int]]:
        """This rank's batches (computed once)."""
        if self._batches is None:
            self._batches = self._all_batches()[self.rank :: self.world_size]
        return self._batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
