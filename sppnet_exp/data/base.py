"""``ClassificationDataModule``: shared LightningDataModule (loaders, views, DDP sharding, generated default).

Subclasses implement :meth:`ClassificationDataModule._scan` (returning class names and the train / eval sample
lists) and may set ``generated_layout`` so that ``root=None`` uses the embedded generated dataset. Subclasses
whose scan is a pure folder listing (``listing_only = True``: ImageNet, Caltech-101) have it cached on disk
under ``file_list_cache`` (:mod:`.file_lists`): scanned once, read by every rank and every cell.

``batch_size`` is the **global** training batch (the paper's 128): under DDP each of the ``W`` processes
takes ``batch_size / W`` images per step (an error when ``W`` does not divide it), so the number of optimizer
steps per epoch does not depend on the number of GPUs. ``eval_batch_size`` is per process (it changes no result).

Batches. ``worker_output="uint8"`` (default): workers ship ``uint8`` crops and their random decisions, and the
LightningModule's batch hook normalises (and lights) them on the device (:mod:`.batches`); ``"float32"``: the
workers normalise (the original path, same numbers). ``decode="gpu"``: workers only read the file bytes and
the batch hook decodes them on the device (:mod:`.device_decode`). After the hook, train batches are
``(images[B,3,crop,crop] float, targets, n_skipped)``; val (centre view) and each test view ``(images[B,V,3,h,w]
float, targets)``; targets are ``long[B]`` or, when ``multilabel``, ``float[B,C]``.

The module shards itself under DDP (the Trainer must use ``use_distributed_sampler=False``): training uses
``DistributedSampler(shuffle=True, seed, drop_last=True)``, evaluation an un-repeated round-robin shard (every
sample exactly once over the ranks; ranks may differ by one batch). ``pin_memory="auto"`` pins host memory
when the trainer runs on CUDA."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from sppnet_exp.utils.dist import rank_info

from .batches import collate_train_uint8
from .device_decode import EncodedImageList, collate_encoded
from .file_lists import cache_path, load_or_scan
from .generated import ensure_generated
from .images import ImageList, Target, collate_eval, collate_train, collate_whole, image_size, whole_image
from .samplers import EpochShuffleSampler, SeededIndices, SizeBucketBatchSampler, UnrepeatedDistributedSampler
from .transforms import EVAL_VIEWS, EvalTransform, TrainTransform, resized_size
from .views import MAP_VIEWS

TEST_VIEWS = (*EVAL_VIEWS, *MAP_VIEWS)  # crops and full images, and the views pooled from feature maps

log = logging.getLogger(__name__)

Sample = tuple[str, Target]
WORKER_OUTPUTS = ("uint8", "float32")
DECODERS = ("cpu", "gpu")


def per_process_batch(global_batch: int, world_size: int) -> int:
    """The batch of one DDP process: ``global_batch / world_size``; a clear error when it does not divide."""
    if global_batch < 1 or world_size < 1:
        raise ValueError(f"batch size ({global_batch}) and world size ({world_size}) must be positive")
    if global_batch % world_size:
        raise ValueError(
            f"data.batch_size={global_batch} is the global batch (the paper's SGD batch) and must be divisible "
            f"by the world size {world_size} (processes x nodes): each process takes batch_size / world_size. "
            f"Pick a batch size that is a multiple of {world_size} or another number of devices."
        )
    return global_batch // world_size


class ClassificationDataModule(L.LightningDataModule):
    """Shared data module; see the module docstring for batch formats and sharding."""

    dataset_name = "base"
    generated_layout: str | None = None  # "imagenet" / "caltech101": layout used when root is None
    multilabel = False
    listing_only = False  # the scan only lists folders (integer targets): its result may be cached on disk

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
        pin_memory: bool | str = "auto",
        generated_dir: str = "data/generated",
        gen_classes: int = 10,
        gen_train_per_class: int = 260,
        gen_val_per_class: int = 50,
        gen_seed: int = 0,
        persistent_workers: bool = True,
        worker_output: str = "uint8",
        decode: str = "cpu",
        file_list_cache: str | None = None,
        file_list_wait_s: float = 600.0,
        cache_images: bool = False,
    ) -> None:
        super().__init__()
        views = list(eval_views)
        bad = [v for v in views if v not in TEST_VIEWS]
        if bad or not views:
            raise ValueError(f"eval_views must be a non-empty list from {TEST_VIEWS}, got {views}")
        if worker_output not in WORKER_OUTPUTS:
            raise ValueError(f"worker_output must be one of {WORKER_OUTPUTS}, got {worker_output!r}")
        if decode not in DECODERS:
            raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
        if decode == "gpu" and worker_output != "uint8":
            raise ValueError("decode=gpu decodes on the device: it needs worker_output=uint8")
        if pin_memory not in (True, False, "auto"):
            raise ValueError(f"pin_memory must be true, false or 'auto', got {pin_memory!r}")
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
        self.pin_memory = pin_memory
        self.persistent_workers = bool(persistent_workers)
        self.worker_output, self.decode = worker_output, decode
        self.file_list_cache = file_list_cache
        self.file_list_wait_s = float(file_list_wait_s)
        self.cache_images = bool(cache_images)  # decoded + resized images kept in memory (ImageList.cache_side)
        self.scan_source: str | None = None  # "scan" or "cache" once set up
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

    def _scan_params(self) -> dict[str, Any]:
        """Settings the scan depends on besides the folder tree (part of the file-list cache key)."""
        return {}

    def _scan_extra_files(self, root: Path) -> list[Path]:
        """Files outside the listed folders whose content the scan reads (part of the cache key)."""
        return []

    def _cached_scan(self, primary: bool) -> tuple[list[str], list[Sample], list[Sample]]:
        root = self.data_root
        if not (self.listing_only and self.file_list_cache):
            self.scan_source = "scan"
            return self._scan(root)
        params = {"dataset": self.dataset_name, "class": type(self).__name__, **self._scan_params()}
        listing, self.scan_source = load_or_scan(
            cache_path(self.file_list_cache, self.dataset_name, root, params),
            root,
            params,
            lambda: self._scan(root),
            primary=primary,
            wait_s=self.file_list_wait_s,
            extra_files=self._scan_extra_files(root),
        )
        return listing

    @property
    def data_root(self) -> Path:
        """The dataset folder (the generated one when ``root`` is None; generated on first use)."""
        if self._data_root is None:
            if self.root is None:
                self._data_root = self.generate()
            else:
                self._data_root = Path(self.root).expanduser()
        return self._data_root

    def prepare_data(self) -> None:
        """Generate the embedded dataset if needed (called once per node by Lightning)."""
        if self.root is None:
            self.generate()

    def generate(self) -> Path:
        """The generated dataset of ``generated_layout`` under ``generated_dir`` (written once; see
        :func:`~sppnet_exp.data.generated.ensure_generated`); a subclass with another generator overrides this."""
        return ensure_generated(self.generated_dir, self.generated_layout, **self.gen_kwargs)

    def setup(self, stage: str | None = None) -> None:
        """Scan the dataset once (rank 0 scans or reads the file-list cache; other ranks read it)."""
        if self._scanned is None:
            classes, train, evals = self._cached_scan(primary=rank_info().is_primary)
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

    def _on_cuda(self) -> bool:
        trainer = getattr(self, "trainer", None)
        accelerator = getattr(trainer, "accelerator", None) if trainer is not None else None
        return type(accelerator).__name__ == "CUDAAccelerator"

    def _loader_kwargs(self) -> dict[str, Any]:
        pin = self._on_cuda() if self.pin_memory == "auto" else bool(self.pin_memory)
        return {
            "num_workers": self.num_workers,
            "pin_memory": pin,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
        }

    def _loader(self, dataset: Dataset, **kw: Any) -> DataLoader:
        """Every loader of this module: the shared settings, and a generator of its own from which it draws its
        workers' base seed (not from the global RNG, so dropout sees the same stream with 0 or N workers)."""
        return DataLoader(dataset, **kw, **self._loader_kwargs(), generator=torch.Generator().manual_seed(self.seed))

    @property
    def process_batch_size(self) -> int:
        """This process's training batch: the global ``batch_size`` divided by the world size."""
        return per_process_batch(self.batch_size, self._world()[0])

    # ----- loaders -----------------------------------------------------------------------------------------
    def train_dataset(self) -> Dataset:
        """The training split as this module's workers load it (``worker_output`` / ``decode``)."""
        if self.decode == "gpu":
            return EncodedImageList(self.train_samples, train=self.train_transform, skip_bad=True)
        transform = self.train_transform.sample if self.worker_output == "uint8" else self.train_transform
        cache = self.resize if self.cache_images else None
        return ImageList(self.train_samples, transform, skip_bad=True, cache_side=cache)

    def train_collate(self) -> Callable[[list[Any]], Any]:
        """The collate function matching :meth:`train_dataset`."""
        if self.decode == "gpu":
            return partial(collate_encoded, transform=self.train_transform)
        collate = collate_train_uint8 if self.worker_output == "uint8" else collate_train
        return partial(collate, empty_shape=(3, self.crop, self.crop))

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches of this rank's shard (``batch_size / world_size`` images each)."""
        dataset = self.train_dataset()
        world, rank = self._world()
        batch = per_process_batch(self.batch_size, world)
        if world > 1:
            sampler = DistributedSampler(
                dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True
            )
        else:
            sampler = EpochShuffleSampler(len(dataset), seed=self.seed)
        sampler = SeededIndices(sampler, seed=self.seed)  # augmentations independent of workers and ranks
        # Drop the last incomplete batch unless the shard is smaller than one batch (tiny test sets).
        drop_last = len(sampler) >= batch
        return self._loader(
            dataset, batch_size=batch, sampler=sampler, drop_last=drop_last, collate_fn=self.train_collate()
        )

    def eval_dataset(self, view: str) -> Dataset:
        """The evaluation split with the transform of ``view`` (errors raise, naming the file). The views pooled from
        feature maps read the whole decoded image (on the CPU, whatever ``decode`` says: a batch of them has as many
        sizes as images)."""
        if view in MAP_VIEWS:
            return ImageList(self.eval_samples, whole_image)
        transform = EvalTransform(view, self.resize, self.crop, self.full_resize)
        if self.decode == "gpu":
            return EncodedImageList(self.eval_samples, view=transform)
        cache = (self.full_resize if view == "full" else self.resize) if self.cache_images else None
        return ImageList(
            self.eval_samples, transform.views if self.worker_output == "uint8" else transform, cache_side=cache
        )

    def eval_collate(self, view: str) -> Callable[[list[Any]], Any]:
        """The collate function matching :meth:`eval_dataset`."""
        if view in MAP_VIEWS:
            return collate_whole
        if self.decode == "gpu":
            return partial(collate_encoded, transform=EvalTransform(view, self.resize, self.crop, self.full_resize))
        return collate_eval

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
        """Loader of one eval view over this rank's un-repeated shard: ``(images[B,V,3,h,w], targets)``; for a view
        pooled from feature maps ``([img_1, ..., img_B], targets)``, the whole images."""
        if view not in TEST_VIEWS:
            raise ValueError(f"unknown eval view {view!r}; expected one of {TEST_VIEWS}")
        dataset = self.eval_dataset(view)
        world, rank = self._world()
        collate = self.eval_collate(view)
        if view == "full":
            batch_sampler = SizeBucketBatchSampler(self.full_sizes, self.eval_batch_size, world, rank)
            return self._loader(dataset, batch_sampler=batch_sampler, collate_fn=collate)
        sampler = UnrepeatedDistributedSampler(len(dataset), world, rank)
        return self._loader(dataset, batch_size=self.eval_batch_size, sampler=sampler, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        """Centre-crop validation batches ``(images[B,1,3,crop,crop], targets)``."""
        return self.view_dataloader("center")

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per entry of ``eval_views``, in order."""
        return [self.view_dataloader(v) for v in self.eval_views]
