"""``ClassificationDataModule``: shared LightningDataModule (loaders, views, DDP sharding, generated default).

Subclasses implement :meth:`ClassificationDataModule._scan` (returning class names and the train / eval sample
lists) and may set ``generated_layout`` so that ``root=None`` uses the embedded generated dataset.

Batches: train ``(images[B,3,crop,crop] float, targets, n_skipped)``; val (centre view) and each test view
``(images[B,V,3,h,w] float, targets)``; targets are ``long[B]`` or, when ``multilabel``, ``float[B,C]``. The
module shards itself under DDP (the Trainer must use ``use_distributed_sampler=False``): training uses
``DistributedSampler(shuffle=True, seed, drop_last=True)``, evaluation an un-repeated round-robin shard (every
sample exactly once over the ranks; ranks may differ by one batch)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, DistributedSampler

from .generated import ensure_generated
from .images import ImageList, Target, collate_eval, collate_train, image_size
from .samplers import EpochShuffleSampler, SizeBucketBatchSampler, UnrepeatedDistributedSampler
from .transforms import EVAL_VIEWS, EvalTransform, TrainTransform, resized_size

Sample = tuple[str, Target]


class ClassificationDataModule(L.LightningDataModule):
    """Shared data module; see the module docstring for batch formats and sharding."""

    dataset_name = "base"
    generated_layout: str | None = None  # "imagenet" / "caltech101": layout used when root is None
    multilabel = False

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        resize: int = 256,
        crop: int = 224,
        full_resize: int = 256,
        train_crop: str = "five",
        flip: bool = True,
        color: float = 0.1,
        eval_views: Sequence[str] = ("10view",),
        seed: int = 0,
        pin_memory: bool = False,
        generated_dir: str = "data/generated",
        gen_classes: int = 10,
        gen_train_per_class: int = 260,
        gen_val_per_class: int = 50,
        gen_seed: int = 0,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        views = list(eval_views)
        bad = [v for v in views if v not in EVAL_VIEWS]
        if bad or not views:
            raise ValueError(f"eval_views must be a non-empty list from {EVAL_VIEWS}, got {views}")
        if root is None and self.generated_layout is None:
            raise ValueError(f"{type(self).__name__} needs a root folder (no generated default for this dataset)")
        self.root = None if root is None else str(root)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.resize, self.crop, self.full_resize = int(resize), int(crop), int(full_resize)
        self.train_crop, self.flip, self.color = train_crop, bool(flip), float(color)
        self.eval_views = views
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.generated_dir = generated_dir
        self.gen_kwargs = {
            "num_classes": int(gen_classes),
            "train_per_class": int(gen_train_per_class),
            "val_per_class": int(gen_val_per_class),
            "seed": int(gen_seed),
        }
        self.name = "generated" if root is None else self.dataset_name
        self.train_transform = TrainTransform(resize, crop, train_crop, flip, color)  # validates the arguments
        self._scanned: tuple[list[str], list[Sample], list[Sample]] | None = None
        self._data_root: Path | None = None
        self._size_cache: dict[int, list[tuple[int, int]]] = {}

    # ----- dataset discovery -------------------------------------------------------------------------------
    def _scan(self, root: Path) -> tuple[list[str], list[Sample], list[Sample]]:
        """Return ``(class_names, train_samples, eval_samples)`` for the dataset under ``root``."""
        raise NotImplementedError

    @property
    def data_root(self) -> Path:
        """The dataset folder (the generated one when ``root`` is None; generated on first use)."""
        if self._data_root is None:
            if self.root is None:
                self._data_root = ensure_generated(self.generated_dir, self.generated_layout, **self.gen_kwargs)
            else:
                self._data_root = Path(self.root).expanduser()
        return self._data_root

    def prepare_data(self) -> None:
        """Generate the embedded dataset if needed (called once per node by Lightning)."""
        if self.root is None:
            ensure_generated(self.generated_dir, self.generated_layout, **self.gen_kwargs)

    def setup(self, stage: str | None = None) -> None:
        """Scan the dataset (once; cheap afterwards)."""
        if self._scanned is None:
            classes, train, evals = self._scan(self.data_root)
            if not classes:
                raise ValueError(f"{self.name} root {self.data_root}: no classes found")
            self._scanned = (classes, train, evals)

    def _data(self) -> tuple[list[str], list[Sample], list[Sample]]:
        self.setup()
        assert self._scanned is not None
        return self._scanned

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        return self._data()[0]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self._data()[0])

    @property
    def train_samples(self) -> list[Sample]:
        """``(path, target)`` of the training split."""
        return self._data()[1]

    @property
    def eval_samples(self) -> list[Sample]:
        """``(path, target)`` of the evaluation split (used for val and test)."""
        return self._data()[2]

    # ----- distributed context ----------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        return 1, 0

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
        }

    # ----- loaders -----------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches ``(images, targets, n_skipped)`` with this rank's shard."""
        dataset = ImageList(self.train_samples, self.train_transform, skip_bad=True)
        world, rank = self._world()
        if world > 1:
            sampler = DistributedSampler(
                dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True
            )
        else:
            sampler = EpochShuffleSampler(len(dataset), seed=self.seed)
        # Drop the last incomplete batch unless the shard is smaller than one batch (tiny test sets).
        drop_last = len(sampler) >= self.batch_size
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=partial(collate_train, empty_shape=(3, self.crop, self.crop)),
            **self._loader_kwargs(),
        )

    def eval_dataset(self, view: str) -> ImageList:
        """The evaluation split with the transform of ``view`` (errors raise, naming the file)."""
        return ImageList(self.eval_samples, EvalTransform(view, self.resize, self.crop, self.full_resize))

    def full_sizes(self) -> list[tuple[int, int]]:
        """Resized ``(h, w)`` of every eval image for the full view (image headers; cached)."""
        if self.full_resize not in self._size_cache:
            from concurrent.futures import ThreadPoolExecutor

            paths = [p for p, _ in self.eval_samples]
            with ThreadPoolExecutor(max_workers=8) as pool:
                hw = list(pool.map(image_size, paths, chunksize=64))
            self._size_cache[self.full_resize] = [resized_size(h, w, self.full_resize) for h, w in hw]
        return self._size_cache[self.full_resize]

    def view_dataloader(self, view: str) -> DataLoader:
        """Loader of one eval view over this rank's un-repeated shard: ``(images[B,V,3,h,w], targets)``."""
        if view not in EVAL_VIEWS:
            raise ValueError(f"unknown eval view {view!r}; expected one of {EVAL_VIEWS}")
        dataset = self.eval_dataset(view)
        world, rank = self._world()
        if view == "full":
            batch_sampler = SizeBucketBatchSampler(self.full_sizes, self.eval_batch_size, world, rank)
            return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate_eval, **self._loader_kwargs())
        sampler = UnrepeatedDistributedSampler(len(dataset), world, rank)
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            sampler=sampler,
            collate_fn=collate_eval,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        """Centre-crop validation batches ``(images[B,1,3,crop,crop], targets)``."""
        return self.view_dataloader("center")

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per entry of ``eval_views``, in order."""
        return [self.view_dataloader(v) for v in self.eval_views]
