"""The run lifecycle every task shares: the one task runner the entry scripts (``train``, ``eval``, ``detect``) call.

* :mod:`.runner` — a job: pre-flight, DDP environment, crash logging, W&B closed; :mod:`.tasks` — which package
  computes each command (and the door through which one task asks for another's run);
* :mod:`.lifecycle` — a run dir: skip, resume, ``retrain=true``, refusal of a run made with other settings;
* :mod:`.results` — ``results.json``, written atomically; :mod:`.wiring` — the Lightning objects from the
  config (datamodule, loggers, callbacks, trainer, model kwargs); :mod:`.ddp` — one DDP launch per Hydra job;
* :mod:`.cli`, :mod:`.preflight`, :mod:`.experiments` — the command line: inputs checked before anything runs.

Below it, peers that never import each other: :mod:`sppnet_exp.classification` and :mod:`sppnet_exp.detection`;
below those, what both use: :mod:`sppnet_exp.models`, :mod:`sppnet_exp.data`, :mod:`sppnet_exp.formats`,
:mod:`sppnet_exp.utils`.
"""

from sppnet_exp.engine.runner import optimized_metric, run_task

__all__ = ["optimized_metric", "run_task"]
