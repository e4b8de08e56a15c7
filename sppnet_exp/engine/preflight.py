"""Pre-flight: every input a command will read, checked before anything is trained, generated or proposed.

A user's mistake (no ``data.root``, a wrong root, a missing proposals file or checkpoint) is reported in seconds
as one short message naming the key, what is wrong, what was expected and an example command line
(:func:`format_problems`), not after the pretrained net has trained. What is checked:

* ``train`` / ``eval``: mandatory values left unset (``???``, e.g. ``data.root`` of ``data=imagenet``), the
  classification root (:mod:`sppnet_exp.data.roots`: ImageNet, Caltech-101, VOC 2007), ``resume_from``;
* ``detect``: the same unset values, the detection root (:func:`sppnet_exp.data.detection_layout.resolve_root`,
  the resolution the splits use), the proposal files (``proposals.source=rcnn_mat`` / ``array_dir`` with
  ``proposals.path``, per split), and the pretrained net: ``pretrained.checkpoint``, or its Table 2 run (found
  finished, or trainable: the classification root of ``pretrained.overrides``, or ``train_if_missing``).

Only folder and file tests run here (no dataset is listed, nothing heavy is imported). The checks return
:class:`Problem` lists; :mod:`sppnet_exp.engine.cli` prints them and exits, before Hydra creates a run dir.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sppnet_exp.data.detection_layout import LABELIMG_LAYOUT, VOC_LAYOUT, resolve_root
from sppnet_exp.data.roots import (
    CALTECH101_LAYOUT,
    IMAGENET_LAYOUT,
    VOC_CLS_LAYOUT,
    caltech101_root_problem,
    imagenet_root_problem,
    voc_cls_root_problem,
)

__all__ = [
    "COMMANDS",
    "PreflightError",
    "Problem",
    "check_checkpoint",
    "check_classification_root",
    "check_combination",
    "check_detection_root",
    "check_inputs",
    "check_pretrained",
    "check_proposals",
    "check_unset",
    "format_problems",
    "unset_keys",
]

# command -> (console script, module): the names a message tells the user to run
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("sppnet-train", "sppnet_exp.train"),
    "eval": ("sppnet-eval", "sppnet_exp.eval"),
    "detect": ("sppnet-detect", "sppnet_exp.detect"),
    "transfer": ("sppnet-transfer", "sppnet_exp.transfer"),
}


@dataclass(frozen=True)
class Problem:
    """One wrong input: the key at fault, what is wrong, what was expected, and the override that fixes it."""

    key: str  # "data.root", "proposals.path.test", "experiment"
    problem: str  # "/nonexistent does not exist"
    expected: str  # "an ILSVRC2012 folder: train/<wnid>/*.JPEG and val/ ..."
    fix: str | None = None  # an override of the same command, e.g. "data.root=/path/to/ILSVRC2012"
    example: str | None = None  # a whole command line, when the fix is not an override of this command


class PreflightError(Exception):
    """The problems pre-flight found (raised only where a traceback is asked for: ``HYDRA_FULL_ERROR=1``)."""

    def __init__(self, command: str, problems: Sequence[Problem], argv: Sequence[str] = ()) -> None:
        self.command, self.problems = command, list(problems)
        super().__init__(format_problems(command, problems, argv))


# ----- the message ---------------------------------------------------------------------------------------------
def _quote(arg: str) -> str:
    """Shell quoting that keeps Hydra overrides readable: ``"pretrained.overrides=['data.root=/x']"``."""
    if arg == shlex.quote(arg):
        return arg
    return f'"{arg}"' if not any(c in arg for c in '"$`\\') else shlex.quote(arg)


def _override_key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~")


def example_command(command: str, argv: Sequence[str], fixes: Sequence[str]) -> str:
    """``python -m <module> <argv>`` with each fix replacing the argument of the same key (or appended)."""
    args = list(argv)
    for fix in fixes:
        key = _override_key(fix)
        at = [i for i, a in enumerate(args) if "=" in a and _override_key(a) == key]
        if at:
            args[at[0]] = fix
            for i in reversed(at[1:]):
                del args[i]
        else:
            args.append(fix)
    return " ".join(["python", "-m", COMMANDS[command][1], *(_quote(a) for a in args)])


def format_problems(command: str, problems: Sequence[Problem], argv: Sequence[str]) -> str:
    """The message: per problem ``<prog>: error: <key>: <problem>`` and its ``expected:`` line, then one
    ``example:`` line with every fix applied to the user's own command line (``argv``)."""
    prog = COMMANDS.get(command, (f"sppnet-{command}", ""))[0]
    lines: list[str] = []
    for p in problems:
        lines.append(f"{prog}: error: {p.key}: {p.problem}")
        lines += [f"  expected: {p.expected}"] if p.expected else []
    fixes = list({_override_key(p.fix): p.fix for p in reversed(problems) if p.fix}.values())[::-1]  # first per key
    examples = [p.example for p in problems if p.example]
    if examples:
        lines.append(f"  example:  {examples[0]}")
    elif fixes and command in COMMANDS:
        lines.append(f"  example:  {example_command(command, argv, fixes)}")
    return "\n".join(lines)


# ----- typed checks --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Root:
    """What a classification DataModule's root must be (``problem(root)`` from :mod:`sppnet_exp.data.roots`)."""

    what: str
    layout: str
    example: str
    problem: Callable[[Path], str | None]

    @property
    def expected(self) -> str:
        return f"{self.what}: {self.layout.removeprefix('expected ')}"


CLASSIFICATION_ROOTS: dict[str, _Root] = {
    "sppnet_exp.data.imagenet.ImageNetDataModule": _Root(
        "an ILSVRC2012 folder", IMAGENET_LAYOUT, "/path/to/ILSVRC2012", imagenet_root_problem
    ),
    "sppnet_exp.data.caltech101.Caltech101DataModule": _Root(
        "a Caltech-101 folder", CALTECH101_LAYOUT, "/path/to/caltech101", caltech101_root_problem
    ),
    "sppnet_exp.data.voc_cls.VOC2007ClsDataModule": _Root(
        "a VOC 2007 folder", VOC_CLS_LAYOUT, "/path/to/VOCdevkit/VOC2007", voc_cls_root_problem
    ),
}
_DETECTION_EXAMPLES = {
    "voc07": "/path/to/VOCdevkit/VOC2007",
    "voc": "/path/to/VOCdevkit/VOC2007",
    "labelimg": "/path/to/images",
}


def _root_spec(data: DictConfig) -> _Root | None:
    return CLASSIFICATION_ROOTS.get(str(data.get("_target_", "")))


def unset_keys(node: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """The dotted keys whose value is ``???``, outside ``hydra`` (nothing is resolved: the run dir of a config with
    an unset root does not resolve, and Hydra's own keys are only set once the job starts)."""
    keys: list[str] = []
    items = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for k in items:
        if not prefix and k == "hydra":
            continue
        child = node._get_node(k)  # the node itself, unresolved
        path = f"{prefix}{k}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{k}]"
        if child is None or child._is_interpolation():
            continue
        if child._is_missing():
            keys.append(path)
        elif isinstance(child, DictConfig | ListConfig):
            keys += unset_keys(child, f"{path}.")
    return keys


def check_unset(cfg: DictConfig) -> list[Problem]:
    """Mandatory values left unset (``???``) anywhere outside ``hydra``: ``data.root`` of ``data=imagenet``,
    ``data=voc``... (Hydra would stop on the first one it resolves, with a traceback of the run dir)."""
    problems = []
    for key in unset_keys(cfg):
        if key == "data.root":
            spec = _root_spec(cfg.data)
            name = cfg.data.get("name", "?")
            if spec is not None:
                expected, example = spec.expected, spec.example
            else:
                expected, example = _detection_expected(cfg.data), _DETECTION_EXAMPLES.get(name, "/path/to/dataset")
            problems.append(Problem(key, f"not set (data {name!r} has no default root)", expected, f"{key}={example}"))
        else:
            problems.append(Problem(key, "not set (??? in the config)", "a value", f"{key}=..."))
    return problems


def check_classification_root(data: DictConfig, key: str = "data.root") -> Problem | None:
    """The classification root of ``data`` (its DataModule's top-level layout); ``root=null`` is only right for
    the generated set (``data=generated``): elsewhere it would silently train on generated images."""
    spec = _root_spec(data)
    if spec is None or OmegaConf.is_missing(data, "root"):
        return None
    root = data.get("root")
    if root is None:
        if data.get("name") == "generated":
            return None
        return Problem(key, f"null for data {data.get('name')!r} (would use the generated set)", spec.expected)
    problem = spec.problem(Path(str(root)).expanduser())
    return Problem(key, problem, spec.expected, f"{key}={spec.example}") if problem else None


def _detection_expected(data: DictConfig) -> str:
    layout = str(data.get("layout") or "auto")
    voc, labelimg = f"a VOC dataset ({VOC_LAYOUT})", f"LabelImg folders ({LABELIMG_LAYOUT})"
    return {"voc": voc, "labelimg": labelimg}.get(layout, f"{voc} or {labelimg}")


def check_detection_root(data: DictConfig, key: str = "data.root") -> Problem | None:
    """The detection root: found by the splits' own resolution (itself or one or two levels down); ``null`` only
    with ``data.gen`` (the generated scenes, ``data=scenes``)."""
    if OmegaConf.is_missing(data, "root"):
        return None
    root, expected = data.get("root"), _detection_expected(data)
    fix = f"{key}={_DETECTION_EXAMPLES.get(str(data.get('name')), '/path/to/dataset')}"
    if root is None:
        if data.get("gen") is not None:
            return None
        extra = " or VOC2007_ROOT" if data.get("name") == "voc07" else ""
        return Problem(key, f"not set (give data.root{extra}; null would use generated scenes)", expected, fix)
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        return Problem(key, f"{path} {'is not a folder' if path.exists() else 'does not exist'}", expected, fix)
    try:
        resolve_root(path, str(data.get("layout") or "auto"))
    except (OSError, ValueError) as exc:
        return Problem(key, str(exc), expected, fix)
    return None


def check_checkpoint(key: str, value: Any) -> Problem | None:
    """A checkpoint path given in the config (``resume_from``, ``pretrained.checkpoint``) must be a file."""
    if not value:
        return None
    path = Path(str(value)).expanduser()
    if path.is_file():
        return None
    what = "is a folder, not a file" if path.is_dir() else "does not exist"
    return Problem(key, f"{path} {what}", "a Lightning checkpoint file (.ckpt)", f"{key}=/path/to/last.ckpt")


def check_proposals(cfg: DictConfig) -> list[Problem]:
    """``proposals.source`` and, for precomputed boxes, ``proposals.path`` (one path, or one per split name:
    ``{trainval: ..., test: ...}``): rcnn_mat a ``.mat`` file (or Fast R-CNN's folder), array_dir a folder."""
    from sppnet_exp.detection.settings import PROPOSAL_SOURCES

    p = cfg.proposals
    source = str(p.source)
    if source not in PROPOSAL_SOURCES:
        return [Problem("proposals.source", f"unknown source {source!r}", " | ".join(PROPOSAL_SOURCES))]
    if source == "selective_search":
        return []
    splits = [str(cfg.data.train_split), str(cfg.data.test_split)]
    if source == "rcnn_mat":
        what, ends = "R-CNN's selective-search .mat file (or Fast R-CNN's folder)", ".mat"
    else:
        what, ends = "a folder of <image_id>.npy/.txt", ""
    expected = f"{what} per split: {{{', '.join(f'{s}: ...' for s in splits)}}}"
    fix = "proposals.path={" + ",".join(f"{s}:/path/to/{s}{ends}" for s in splits) + "}"
    path = p.path
    if path is None:
        return [Problem("proposals.path", f"not set (proposals.source={source} reads it)", expected, fix)]
    per_split = {s: path.get(s) for s in splits} if isinstance(path, DictConfig) else dict.fromkeys(splits, path)
    problems = []
    for split, value in per_split.items():
        key = f"proposals.path.{split}" if isinstance(path, DictConfig) else "proposals.path"
        if value is None:
            problems.append(Problem(key, f"no path for split {split!r}", expected, fix))
            continue
        f = Path(str(value)).expanduser()
        ok = f.is_dir() if source == "array_dir" else f.exists()
        if not ok:
            what = "is not a folder" if f.exists() else "does not exist"
            problems.append(Problem(key, f"{f} {what}", expected, fix))
    return list(dict.fromkeys(problems))  # one path for both splits: reported once


def _finished_run(run_dir: Path) -> bool:
    from sppnet_exp.utils.io import read_json

    results, ckpt = run_dir / "results.json", run_dir / "checkpoints" / "last.ckpt"
    if not (results.is_file() and ckpt.is_file()):
        return False
    try:
        return read_json(results).get("status") == "finished"
    except (OSError, ValueError):
        return False


def _overrides_fix(pre: DictConfig, example: str) -> str:
    kept = [str(o) for o in pre.get("overrides") or [] if _override_key(str(o)) != "data.root"]
    return "pretrained.overrides=[" + ",".join(f"'{o}'" for o in [*kept, f"data.root={example}"]) + "]"


def check_pretrained(cfg: DictConfig, pre: DictConfig | None = None, key: str = "pretrained") -> list[Problem]:
    """The net detection starts from: ``pretrained.checkpoint`` must be a file; otherwise the Table 2 run of its
    `train` config must be finished, or trainable: its classification root set (at the paper scale
    ``"pretrained.overrides=['data.root=...']"``) and right, and ``pretrained.train_if_missing`` true."""
    from sppnet_exp.engine.pretrained import pretrained_train_config

    pre = cfg.pretrained if pre is None else pre
    if pre.get("checkpoint"):
        problem = check_checkpoint(f"{key}.checkpoint", pre.checkpoint)
        return [problem] if problem else []
    tcfg = pretrained_train_config(cfg, pre)
    spec = _root_spec(tcfg.data)
    where = f"the pretrained net ({tcfg.cell}, seed {pre.seed}) trains on data={tcfg.data.get('name')}"
    if OmegaConf.is_missing(tcfg.data, "root"):
        expected = f"its root: {spec.expected}" if spec else "its data.root"
        fix = _overrides_fix(pre, spec.example if spec else "/path/to/data") if key == "pretrained" else None
        return [Problem(f"{key}.overrides", f"{where}, whose data.root is not set", expected, fix)]
    try:
        run_dir = Path(str(tcfg.run_dir))
    except OmegaConfBaseException as exc:
        return [Problem(f"{key}.overrides", f"{where}; its run dir cannot be resolved: {exc}", "a complete config")]
    if _finished_run(run_dir):
        return []  # found: its data is not read again
    if not pre.get("train_if_missing", True):
        cli = f"python -m sppnet_exp.train model={tcfg.model.name} mode={tcfg.mode.name} seed={tcfg.seed}"
        return [
            Problem(
                f"{key}.train_if_missing",
                f"false, and {tcfg.cell} has no finished run at {run_dir}",
                f"a finished pretrained run (train it first: {cli} scale={tcfg.scale.name}) or train_if_missing=true",
                f"{key}.train_if_missing=true" if key == "pretrained" else None,
            )
        ]
    problem = check_classification_root(tcfg.data, key="data.root")
    if problem is None:
        return []
    fix = _overrides_fix(pre, spec.example) if spec and key == "pretrained" else None
    return [Problem(f"{key}.overrides (data.root)", f"{where}: {problem.problem}", problem.expected, fix)]


def check_combination(cfg: DictConfig, earlier_runs: Collection[Path] = ()) -> list[Problem]:
    """Table 12's combination reads the ``detector.row`` detections of each member cell (``detector.members``),
    written by the member's own run with the same data and scale: each must be there, or be the run dir of an
    earlier job of the same sweep (``earlier_runs``: ``-m experiment=table12/net1,table12/net2,table12/combination``
    computes the members first; the job's own check then finds their files)."""
    from sppnet_exp.detection.cells.members import member_detections

    members = [str(m) for m in cfg.detector.get("members") or []]
    if len(members) < 2:
        fix = "detector.members=[table12/net1,table12/net2]"
        return [Problem("detector.members", f"{members} names fewer than two experiments", "two detection cells", fix)]
    expected = f"each member's {cfg.detector.row} detections: run the members first, with the same data/scale"
    coming = {Path(r).resolve() for r in earlier_runs}
    return [
        Problem(
            "detector.members",
            f"{name} has no run with this data and scale (no {path})",
            expected,
            f"experiment={name}",
        )
        for name, _, path in member_detections(cfg)
        if not path.is_file() and path.parent.resolve() not in coming
    ]


def _rcnn_pretrained(cfg: DictConfig) -> DictConfig | None:
    """The R-CNN net of a timing cell (``detector.rcnn_pretrained``: a pretrained group composed into the node)."""
    node = OmegaConf.select(cfg, "detector.rcnn_pretrained")
    return node if isinstance(node, DictConfig) else None


def check_settings(cfg: DictConfig) -> list[Problem]:
    """The typed nodes (:mod:`sppnet_exp.detection.settings`) whose values are checked when their object is built:
    a choice outside its list (``svm.neg_prune=sometimes``) is named here, not in the stage that reads it."""
    problems = []
    for key in ("svm", "detector.test", "proposals", "detector.pooling"):  # cfg.test is detector.test
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) not in (dict, None):
            try:
                OmegaConf.to_object(node)
            except ValueError as exc:
                what, _, allowed = str(exc).partition(" must be ")
                problems.append(Problem(what if " " not in what else key, str(exc), allowed or "a valid value"))
    return problems


def _detect_inputs(cfg: DictConfig, earlier_runs: Collection[Path]) -> list[Problem]:
    from sppnet_exp.detection.cells.methods import METHODS

    name = OmegaConf.select(cfg, "detector.method")
    method = METHODS.get(str(name))
    if method is None:  # no detector (a bare config): nothing to check; a misspelt one: named
        known = "one of " + ", ".join(METHODS)
        return [] if name is None else [Problem("detector.method", f"{name!r} is not a detection method", known)]
    problems: list[Problem] = check_settings(cfg)
    root = check_detection_root(cfg.data) if method.reads_data(cfg) and cfg.get("data") is not None else None
    problems += [root] if root else []
    if method.reads_proposals_and_net(cfg):
        problems += check_proposals(cfg)
        problems += check_pretrained(cfg)
        if (rcnn := _rcnn_pretrained(cfg)) is not None:  # a timing cell's R-CNN net
            problems += check_pretrained(cfg, rcnn, key="detector.rcnn_pretrained")
    if method.combines:
        problems += check_combination(cfg, earlier_runs)
    resume = check_checkpoint("resume_from", cfg.get("resume_from"))
    return problems + ([resume] if resume else [])


def _train_inputs(cfg: DictConfig) -> list[Problem]:
    data = cfg.get("data")
    root = check_classification_root(data) if isinstance(data, DictConfig) else None
    problems = (root, check_checkpoint("resume_from", cfg.get("resume_from")))
    return [p for p in problems if p]


def _transfer_inputs(cfg: DictConfig) -> list[Problem]:
    """A transfer cell: its data root when one is given (null is the generated set, the embedded default) and
    its pretrained net."""
    root = check_classification_root(cfg.data) if cfg.data.get("root") is not None else None
    return ([root] if root else []) + check_pretrained(cfg)


# The `data` and `scale` groups hold the options of both kinds of task: detection's are the ones whose DataModule
# is the detection one and whose scale has the detection scales.
_DETECTION_DATA = "DetectionDataModule"


def _options(group: str, detection: bool) -> str:
    from sppnet_exp.config import config_dir

    names = []
    for path in sorted((Path(config_dir()) / group).glob("*.yaml")):
        if path.stem.startswith("_"):
            continue
        text = path.read_text()
        is_detection = _DETECTION_DATA in text if group == "data" else "scales_1:" in text
        if is_detection == detection:
            names.append(path.stem)
    return " | ".join(names)


def check_kinds(cfg: DictConfig, command: str) -> list[Problem]:
    """A `data=` or `scale=` option of the other kind of task (``sppnet-train data=voc07``, ``sppnet-detect
    scale=paper``): named before anything is composed further or run."""
    detection = command == "detect"
    kind, other = ("detection", "classification") if detection else ("classification", "detection")
    problems = []
    data, scale = cfg.get("data"), cfg.get("scale")
    if isinstance(data, DictConfig) and str(data.get("_target_", "")).endswith(_DETECTION_DATA) != detection:
        name = data.get("name")
        problems.append(Problem("data", f"a {other} dataset ({name})", f"one of {_options('data', detection)}"))
    if isinstance(scale, DictConfig) and "name" in scale and ("scales_1" in scale) != detection:
        expected = f"a {kind} scale: {_options('scale', detection)}"
        problems.append(Problem("scale", f"a {other} scale ({scale.name})", expected))
    return problems


def check_inputs(cfg: DictConfig, command: str, earlier_runs: Collection[Path] = ()) -> list[Problem]:
    """Every problem with the inputs ``command`` (``train``, ``eval``, ``detect``, ``transfer``) would read under
    ``cfg``; ``earlier_runs``: the run dirs the earlier jobs of the same sweep will have written by then."""
    kinds = check_kinds(cfg, command)
    if kinds:  # the rest of the config reads keys of its own kind of data and scale: nothing more to check
        return kinds
    problems = check_unset(cfg)  # an unset root is reported here; the root checks below skip it
    try:
        if command == "detect":
            problems += _detect_inputs(cfg, earlier_runs)
        else:
            problems += _transfer_inputs(cfg) if command == "transfer" else _train_inputs(cfg)
    except OmegaConfBaseException as exc:  # a value the checks read does not resolve: name it, no traceback
        key = getattr(exc, "full_key", None) or "config"
        problems.append(Problem(str(key), str(exc).splitlines()[0], "a value that resolves"))
    return list(dict.fromkeys(problems))
