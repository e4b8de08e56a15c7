"""Where the Hydra configs live, and the OmegaConf resolvers they use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sppnet_exp.utils.identity import fingerprint  # the run identity's hash lives with the identity

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent

__all__ = ["REPO_DIR", "config_dir", "fingerprint", "register_schemas", "wandb_disabled", "wandb_offline"]


def config_dir() -> str:
    """Return the Hydra config folder: `sppnet_exp/conf` in a wheel, the repo's `conf/` in a checkout."""
    for candidate in (PACKAGE_DIR / "conf", REPO_DIR / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"no Hydra config folder: looked for train.yaml in {PACKAGE_DIR / 'conf'} and {REPO_DIR / 'conf'}"
    )


def wandb_disabled() -> bool:
    """``WANDB_MODE=disabled``: no W&B logger, no ``wandb`` folder and no ``wandb.init`` anywhere in the project."""
    return os.environ.get("WANDB_MODE", "").strip().lower() == "disabled"


def wandb_offline() -> bool:
    """W&B runs offline unless an API key is configured (env or ~/.netrc) or WANDB_MODE says otherwise."""
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("online", "run"):
        return False
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" not in netrc.read_text()
    except OSError:
        return True


def register_resolvers() -> None:
    """Register `${sppnet.fingerprint:...}`, `${sppnet.recipe:...}`, `${sppnet.detect_recipe:...}`,
    `${sppnet.run_fingerprint:...}`, `${sppnet.default:value,fallback}`, `${sppnet.wandb_offline:}`."""
    from sppnet_exp.utils.identity import detect_recipe_overrides, recipe_overrides, run_fingerprint

    if not OmegaConf.has_resolver("sppnet.fingerprint"):
        OmegaConf.register_new_resolver("sppnet.fingerprint", fingerprint)
    # The two recipe resolvers give a mapping: returned as a DictConfig, so that an in-place resolve (Hydra's
    # `--cfg job --resolve`, OmegaConf.resolve) can store it (a plain dict is refused as a node value).
    if not OmegaConf.has_resolver("sppnet.recipe"):
        OmegaConf.register_new_resolver("sppnet.recipe", lambda *a: OmegaConf.create(recipe_overrides(*a)))
    if not OmegaConf.has_resolver("sppnet.detect_recipe"):
        OmegaConf.register_new_resolver(
            "sppnet.detect_recipe", lambda *a: OmegaConf.create(detect_recipe_overrides(*a))
        )
    if not OmegaConf.has_resolver("sppnet.run_fingerprint"):
        OmegaConf.register_new_resolver("sppnet.run_fingerprint", run_fingerprint)
    if not OmegaConf.has_resolver("sppnet.default"):
        OmegaConf.register_new_resolver("sppnet.default", lambda value, default: default if value is None else value)
    if not OmegaConf.has_resolver("sppnet.data_name"):  # a classification DataModule's name: generated for root null
        OmegaConf.register_new_resolver("sppnet.data_name", lambda root, name: "generated" if root is None else name)
    if not OmegaConf.has_resolver("sppnet.wandb_offline"):
        OmegaConf.register_new_resolver("sppnet.wandb_offline", wandb_offline)


def register_schemas() -> None:
    """Store the typed config nodes (:data:`sppnet_exp.detection.settings.SCHEMAS`) in Hydra's ConfigStore as
    ``schema/<name>``, for the yaml defaults lists (``- /schema/svm@svm``). Idempotent."""
    from hydra.core.config_store import ConfigStore

    from sppnet_exp.detection.settings import SCHEMAS

    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(group="schema", name=name, node=node)


def compose_config(name: str, overrides: list[str]) -> Any:
    """Compose a primary config (``train``, ``detect``, ...) from inside or outside a running Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(name, overrides=overrides)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(name, overrides=overrides)
