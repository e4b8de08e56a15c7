"""What a run computes: the settings of its identity beyond the config groups hashed whole, and how two differ.

A classification run's fingerprint (``conf/train.yaml``) hashes the model, mode, scale and optim groups whole,
the data set (name, root, generator parameters) and the seed. The trainer and the loader hold further settings
that change the result (epochs, batch limits, precision, gradient clipping, the batch size and the augmentations)
next to many that do not (devices, strategy, workers, logging, progress bar, channels-last memory). This module
sorts them:

- :func:`recipe_overrides` lists the result settings whose value differs from the recipe's default. A value the
  config takes from a group hashed whole (``trainer.max_epochs: ${scale.max_epochs}``, ``data.seed: ${seed}``) is
  the recipe's; a literal counts when it differs from Lightning's default, ``conf/data/_loader.yaml``'s or the
  scale's (``trainer.max_epochs=1`` on a 9-epoch scale). Only a non-default value enters the fingerprint, so a run
  with the default trainer and loader keeps the run dir it had before these settings counted, and a setting added
  later with its default value moves no run. The list is stored in results.json (``config.recipe_overrides``):
  the reporter's "table's own recipe" is a run whose list is empty.
- :func:`result_settings` / :func:`setting_differences`: every result setting of a recorded and a requested config
  side by side — the check that refuses to reuse a run dir whose results.json was computed with other settings
  (a run dir written before these settings counted).

A key that is neither known to be result-neutral nor listed with its default counts with its value: an unknown
setting may change the result. Detection cells (``conf/detect.yaml``) hash their groups whole; of the trainer they
read only the accelerator, the devices and the precision of the conv5 extraction: :func:`detect_recipe_overrides`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = [
    "DATA_HASHED",
    "describe_differences",
    "describe_overrides",
    "fingerprint",
    "detect_recipe_overrides",
    "identity_settings",
    "precision_name",
    "recipe_key",
    "recipe_overrides",
    "recipe_overrides_of",
    "result_settings",
    "run_fingerprint",
    "setting_differences",
]


def fingerprint(*parts: Any) -> str:
    """Return an 8-hex-digit hash of config nodes: the identity of a run (same inputs → same run dir)."""
    plain = [OmegaConf.to_container(p, resolve=True) if isinstance(p, DictConfig | ListConfig) else p for p in parts]
    blob = json.dumps(plain, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


# Trainer keys that never change what a run computes: where and how fast it runs, and what it prints or logs.
TRAINER_NEUTRAL = frozenset(
    {
        "_target_", "default_root_dir", "accelerator", "devices", "num_nodes", "strategy", "channels_last",
        "benchmark", "deterministic", "log_every_n_steps", "num_sanity_val_steps", "use_distributed_sampler",
        "enable_model_summary", "enable_progress_bar", "enable_checkpointing", "detect_anomaly", "logger",
        "callbacks", "profiler", "barebones", "inference_mode",
    }
)  # fmt: skip
# Trainer keys that change the result, with the values that leave it as Lightning's defaults would.
TRAINER_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "min_epochs": (None,),
    "max_steps": (-1, None),
    "min_steps": (None,),
    "max_time": (None,),
    "limit_train_batches": (None, 1.0),
    "limit_val_batches": (None, 1.0),
    "limit_test_batches": (None, 1.0),
    "limit_predict_batches": (None, 1.0),
    "overfit_batches": (0, 0.0),
    "fast_dev_run": (False, 0),
    "accumulate_grad_batches": (1,),
    "gradient_clip_val": (None, 0, 0.0),
    "gradient_clip_algorithm": (None, "norm"),
    "val_check_interval": (None, 1.0),
    "check_val_every_n_epoch": (1,),
    "reload_dataloaders_every_n_epochs": (0,),
    "sync_batchnorm": (False,),
    "precision": ("32-true",),
}
# default: the scale group's value (key of the scale group; validation falls back to every epoch without one)
TRAINER_FROM_SCALE = {"max_epochs": ("max_epochs", None), "check_val_every_n_epoch": ("val_every", 1)}
PRECISION = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}
# Data keys hashed whole by the fingerprint (conf/train.yaml) and those that change no number a run computes
# (the number of workers is result-neutral: augmentations are seeded per image; eval batching groups views only;
# `decode=gpu` is a device choice like the accelerator; `cache_images` keeps the same resized images in memory,
# bit-identical batches, tested).
DATA_HASHED = ("name", "root", "gen_classes", "gen_train_per_class", "gen_val_per_class", "gen_seed")
DATA_NEUTRAL = frozenset(
    {
        "_target_", "generated_dir", "num_workers", "pin_memory", "persistent_workers", "worker_output", "decode",
        "file_list_cache", "file_list_wait_s", "eval_views", "eval_batch_size", "cache_images",
    }
)  # fmt: skip
DATA_DEFAULTS: dict[str, tuple[Any, ...]] = {"train_crop": ("five",), "flip": (True,), "color": (0.1,)}
DATA_FROM_SCALE = ("batch_size", "resize", "crop", "full_resize")  # default: the scale group's value
MATMUL_DEFAULT = "highest"
GROUPS = ("model", "mode", "scale", "optim")  # hashed whole
# What a detection cell's fingerprint hashes (conf/detect.yaml), besides the seed.
DETECT_GROUPS = ("detector", "scale", "pretrained", "proposals", "svm", "test", "rows", "finetune_precision")
DETECT_DATA = ("name", "root", "gen", "classes", "max_images", "train_split", "test_split")
# A value interpolated from a group the fingerprint hashes whole is the recipe's own (`${scale.max_epochs}`).
# ``${oc.select:scale.val_every,1}`` (a hashed key with a fallback for configs whose scale lacks it) is one too.
FROM_HASHED = re.compile(r"^\$\{(?:oc\.select:)?(?:(?:model|mode|scale|optim)\.[\w.]+|seed)(?:,[^{}]*)?\}$")


def _plain(value: Any) -> Any:
    """A config value as plain Python (lists and dicts resolved)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _same(value: Any, defaults: tuple[Any, ...]) -> bool:
    """Whether ``value`` is one of ``defaults``, types included (``limit_train_batches=1`` is one batch, 1.0 all)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return any(text == json.dumps(d, sort_keys=True, default=str) for d in defaults)


def _from_hashed(node: Any, key: str) -> bool:
    """Whether ``node[key]`` is written as an interpolation of a hashed group (only a live config knows)."""
    if not isinstance(node, DictConfig) or not OmegaConf.is_interpolation(node, key):
        return False
    raw = OmegaConf.to_container(node, resolve=False)
    return isinstance(raw, dict) and bool(FROM_HASHED.match(str(raw.get(key, ""))))


def _items(node: Mapping[str, Any] | None, neutral: frozenset[str]) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of the non-neutral keys, reading no neutral value (they may interpolate the run dir)."""
    for key in list((node or {}).keys()):
        if str(key) not in neutral:
            yield str(key), _plain(node[key])  # type: ignore[index]


def precision_name(value: Any) -> str:
    """Lightning's precision spelled one way: ``32`` / ``"32"`` → ``"32-true"``, ``"bf16"`` → ``"bf16-mixed"``."""
    text = str(value)
    return PRECISION.get(text, text)


def _trainer_default(key: str, scale: Mapping[str, Any]) -> tuple[Any, ...]:
    if key in TRAINER_FROM_SCALE:
        scale_key, fallback = TRAINER_FROM_SCALE[key]
        return (_plain(scale.get(scale_key, fallback)),)
    return TRAINER_DEFAULTS.get(key, ())


def _data_default(key: str, scale: Mapping[str, Any], seed: Any) -> tuple[Any, ...]:
    if key in DATA_FROM_SCALE:
        return (_plain(scale.get(key)),)
    if key == "seed":
        return (_plain(seed),)
    return DATA_DEFAULTS.get(key, ())


def recipe_overrides(
    trainer: Mapping[str, Any] | None,
    data: Mapping[str, Any] | None,
    scale: Mapping[str, Any] | None,
    seed: Any = None,
    matmul_precision: Any = MATMUL_DEFAULT,
) -> dict[str, Any]:
    """The result settings of the trainer, the loader and the matmul precision that differ from the recipe's
    defaults, as ``{"trainer.max_epochs": 1, ...}`` (sorted; empty for a default run)."""
    scale = scale or {}
    out: dict[str, Any] = {}
    for key, value in _items(trainer, TRAINER_NEUTRAL):
        if _from_hashed(trainer, key):
            continue
        if key == "precision":
            value = precision_name(value)
        if not _same(value, _trainer_default(key, scale)):
            out[f"trainer.{key}"] = value
    for key, value in _items(data, DATA_NEUTRAL | set(DATA_HASHED)):
        if not _from_hashed(data, key) and not _same(value, _data_default(key, scale, seed)):
            out[f"data.{key}"] = value
    if matmul_precision is not None and str(matmul_precision) != MATMUL_DEFAULT:
        out["matmul_precision"] = str(matmul_precision)
    return dict(sorted(out.items()))


def detect_recipe_overrides(precision: Any = "32-true") -> dict[str, Any]:
    """A detection cell's trainer settings that differ from the default: the conv5 extraction's precision (its
    fine-tuning precision, ``finetune_precision``, is hashed with the cell's groups)."""
    name = precision_name(precision)
    return {} if name == TRAINER_DEFAULTS["precision"][0] else {"trainer.precision": name}


def recipe_overrides_of(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The recipe overrides of a resolved config (a run's results.json ``config``): the recorded list when there is
    one, else computed from its values (a run written before the list was recorded); ``{}`` without a config."""
    if not config:
        return {}
    recorded = config.get("recipe_overrides")
    if isinstance(recorded, Mapping):
        return dict(sorted(_plain(recorded).items()))
    if str(config.get("task_name", "")) == "detect":
        return detect_recipe_overrides((config.get("trainer") or {}).get("precision", "32-true"))
    return recipe_overrides(
        config.get("trainer"),
        config.get("data"),
        config.get("scale"),
        config.get("seed"),
        config.get("matmul_precision", MATMUL_DEFAULT),
    )


def run_fingerprint(overrides: Mapping[str, Any] | None, *parts: Any) -> str:
    """The run's fingerprint: the hash of ``parts``, extended by the non-default result settings when any."""

    extra = _plain(overrides) or {}
    return fingerprint(*parts) if not extra else fingerprint(*parts, {"recipe_overrides": extra})


def result_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every result setting of the trainer and the loader and the matmul precision, flat and resolved
    (``trainer.max_epochs``, ``data.flip``), default or not: what :func:`setting_differences` compares."""
    out: dict[str, Any] = {}
    for key, value in _items(config.get("trainer"), TRAINER_NEUTRAL):
        out[f"trainer.{key}"] = precision_name(value) if key == "precision" else value
    for key, value in _items(config.get("data"), DATA_NEUTRAL | set(DATA_HASHED)):
        out[f"data.{key}"] = value
    out["matmul_precision"] = str(config.get("matmul_precision", MATMUL_DEFAULT))
    return out


def _default_of(key: str) -> tuple[Any, ...]:
    """The default of a :func:`result_settings` key that one side lacks (its config predates the key)."""
    group, _, name = key.partition(".")
    if group == "trainer":
        return TRAINER_DEFAULTS.get(name, ())
    if group == "data":
        return DATA_DEFAULTS.get(name, ())
    return (MATMUL_DEFAULT,) if key == "matmul_precision" else ()


def setting_differences(recorded: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (recorded, requested)}`` of the result settings that differ between two configs (resolved, e.g.
    a results.json ``config`` and the config asked for). A key only one side has differs when its value is not
    the default (a config written before the key existed ran with its default)."""
    a, b = result_settings(recorded), result_settings(requested)
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a) | set(b)):
        if key in a and key in b:
            if not _same(a[key], (b[key],)):
                out[key] = (a[key], b[key])
        elif not _same(a.get(key, b.get(key)), _default_of(key)):
            out[key] = (a.get(key), b.get(key))
    return out


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def identity_settings(config: Mapping[str, Any], with_seed: bool = True) -> dict[str, Any]:
    """Every setting that identifies a recipe, flat (``model.dropout``, ``trainer.max_epochs``): the groups its
    fingerprint hashes whole (a classification or a detection cell's), the data set, the non-default result
    settings and (``with_seed``) the seed."""
    detect = str(config.get("task_name", "")) == "detect"
    out: dict[str, Any] = {}
    for group in DETECT_GROUPS if detect else GROUPS:
        _flat(group, _plain(config.get(group)), out)
    data = config.get("data") or {}
    for key in DETECT_DATA if detect else DATA_HASHED:
        _flat(f"data.{key}", _plain(data.get(key)), out)
    out.update(recipe_overrides_of(config))
    if with_seed:
        out["seed"] = _plain(config.get("seed"))
    return out


def recipe_key(config: Mapping[str, Any] | None) -> str | None:
    """A seed-free hash of :func:`identity_settings`: the seeds of one recipe share it (None without a config)."""

    return fingerprint(identity_settings(config, with_seed=False)) if config else None


def _text(value: Any) -> str:
    return json.dumps(value, default=str)


def describe_differences(diffs: Mapping[str, tuple[Any, Any]], limit: int = 6) -> str:
    """``trainer.max_epochs 1 → 9, data.flip false → true`` (first value → second), at most ``limit`` keys."""
    parts = [f"{k} {_text(a)} → {_text(b)}" for k, (a, b) in list(diffs.items())[:limit]]
    more = len(diffs) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def describe_overrides(overrides: Mapping[str, Any]) -> str:
    """``trainer.max_epochs=1, trainer.limit_train_batches=2``; ``default trainer and loader settings`` when empty."""
    if not overrides:
        return "default trainer and loader settings"
    return ", ".join(f"{k}={_text(v)}" for k, v in overrides.items())
