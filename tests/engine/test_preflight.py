"""Fail fast (issue 22): every input of a command is checked before anything runs; a wrong one is one short
message naming the key, what was expected and an example, with exit code 2, no traceback, no run dir, no torch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from sppnet_exp.config import config_dir
from sppnet_exp.engine.experiments import argv_problems, commands_for, experiment_names
from sppnet_exp.engine.preflight import check_inputs, format_problems
from tests.conftest import REPO

FAST_S = 30.0  # "within seconds", with room for a loaded test machine (idle: about 1 s, see `make bench`)


def _paths(tmp: Path) -> list[str]:
    return [f"paths.output_dir={tmp}/outputs", f"paths.data_dir={tmp}/data", f"paths.runs_root={tmp}/runs"]


def _cli(module: str, *args: str, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sppnet_exp.<module> <args> <paths under tmp>`` from the repo; assert it came back fast."""
    full_env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", **(env or {})}
    if not env or "HYDRA_FULL_ERROR" not in env:
        full_env.pop("HYDRA_FULL_ERROR", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", f"sppnet_exp.{module}", *args, *_paths(tmp)],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.perf_counter() - t0 < FAST_S, proc.stderr
    return proc


def _assert_failed_fast(proc: subprocess.CompletedProcess[str], tmp: Path, *needles: str) -> str:
    """Exit code 2, one short message naming ``needles``, no traceback, no training, nothing written under tmp."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    for needle in needles:
        assert needle in out, (needle, out)
    assert "Traceback" not in out and "Epoch" not in out, out
    assert len(out.strip().splitlines()) <= 12, out
    assert "  example:  python -m sppnet_exp." in out, out
    written = [p for p in tmp.rglob("*")]
    assert written == [], written  # no run dir, no generated data, no outputs folder
    return out


# ----- the cases the issue reports --------------------------------------------------------------------------------
def test_detect_wrong_root_fails_before_any_generation_or_pretraining(tmp_path: Path) -> None:
    """(a): the detection root is checked before the pretrained net's data is generated and the net trained."""
    proc = _cli("detect", "experiment=table9/spp_1scale", "data=voc", "data.root=/nonexistent", tmp=tmp_path)
    out = _assert_failed_fast(proc, tmp_path, "data.root", "/nonexistent does not exist", "Annotations")
    assert out.count("error:") == 1


def test_train_missing_mandatory_root_is_one_message(tmp_path: Path) -> None:
    """(b): ``data=imagenet`` without ``data.root``: not Hydra's 279-line traceback of ``hydra.run.dir``."""
    proc = _cli("train", "data=imagenet", tmp=tmp_path)
    out = _assert_failed_fast(proc, tmp_path, "data.root", "not set", "ILSVRC2012", "data.root=/path/to/ILSVRC2012")
    assert "hydra.run.dir" not in out and "Missing mandatory value" not in out


def test_train_wrong_root_is_printed_once_and_leaves_no_run_dir(tmp_path: Path) -> None:
    """(c): a wrong root: one message (not two tracebacks), no empty run dir."""
    proc = _cli("train", "data=caltech101", f"data.root={tmp_path / 'nowhere'}", tmp=tmp_path)
    out = _assert_failed_fast(proc, tmp_path, "data.root", "does not exist", "101_ObjectCategories")
    assert out.count("error:") == 1


def test_detection_experiment_given_to_train_names_sppnet_detect(tmp_path: Path) -> None:
    """(d): not "Could not override 'detector'"."""
    proc = _cli("train", "experiment=table9/spp_1scale", tmp=tmp_path)
    out = _assert_failed_fast(proc, tmp_path, "experiment", "detection experiment", "sppnet-detect")
    assert "Could not override" not in out
    assert "python -m sppnet_exp.detect experiment=table9/spp_1scale" in out


def test_classification_experiment_given_to_detect_names_sppnet_train(tmp_path: Path) -> None:
    proc = _cli("detect", "experiment=table2/zf5_spp_single", tmp=tmp_path)
    _assert_failed_fast(proc, tmp_path, "classification experiment", "sppnet-train", "sppnet-eval")


def test_unknown_experiment_lists_the_existing_ones(tmp_path: Path) -> None:
    """(e): the experiments of this command (and the closest name as the example), not every option of Hydra's group."""
    proc = _cli("train", "experiment=table2/zf5_spp_singel", tmp=tmp_path)
    out = _assert_failed_fast(proc, tmp_path, "experiment=table2/zf5_spp_singel", "no such experiment")
    assert "table2/:" in out and "zf5_spp_multi" in out and "table3/:" in out
    assert "table9/" not in out  # detection experiments are not listed for sppnet-train
    assert "python -m sppnet_exp.train experiment=table2/zf5_spp_single" in out


# ----- the other inputs: proposals, checkpoints, the pretrained net, Table 12's members ----------------------------
@pytest.mark.parametrize(
    ("module", "args", "needles"),
    [
        ("train", ["resume_from=/nonexistent/last.ckpt"], ["resume_from", "does not exist", ".ckpt"]),
        (
            "detect",
            ["experiment=table9/spp_1scale", "pretrained.checkpoint=/nonexistent.ckpt"],
            ["pretrained.checkpoint", "/nonexistent.ckpt does not exist"],
        ),
        (
            "detect",
            ["experiment=table9/spp_1scale", "proposals.source=rcnn_mat"],
            ["proposals.path", "not set", "proposals.path={trainval:"],
        ),
        (
            "detect",
            ["experiment=table9/spp_1scale", "proposals.source=rcnn_mat", "proposals.path=/nonexistent.mat"],
            ["proposals.path", "/nonexistent.mat does not exist"],
        ),
        (
            "detect",
            ["experiment=table9/spp_1scale", "scale=detect_paper"],
            ["pretrained.overrides", "data=imagenet", "pretrained.overrides=['data.root=/path/to/ILSVRC2012']"],
        ),
        (
            "detect",
            ["experiment=table12/combination"],
            ["detector.members", "table12/net1", "table12/net2", "python -m sppnet_exp.detect experiment=table12/net1"],
        ),
        ("detect", ["experiment=table9/spp_1scale", "data=voc"], ["data.root", "not set", "VOCdevkit"]),
    ],
)
def test_other_inputs_fail_fast(tmp_path: Path, module: str, args: list[str], needles: list[str]) -> None:
    _assert_failed_fast(_cli(module, *args, tmp=tmp_path), tmp_path, *needles)


def test_multirun_checks_every_job_before_the_sweep_dir(tmp_path: Path) -> None:
    """One bad job of a sweep: the sweep does not start (no job runs, no sweep dir); the message says which job."""
    proc = _cli("train", "-m", "data=caltech101", f"data.root={tmp_path / 'a'},{tmp_path / 'b'}", tmp=tmp_path)
    out = _assert_failed_fast(proc, tmp_path, "data.root (job #0 of 2)", "data.root (job #1 of 2)")
    assert out.count("example:") == 1


@pytest.mark.parametrize(
    ("cells", "members_missing"),
    [("table12/net1,table12/net2,table12/combination", False), ("table12/combination,table12/net1,table12/net2", True)],
)
def test_a_sweep_that_computes_the_members_first_may_hold_the_combination(
    tmp_path: Path, cells: str, members_missing: bool
) -> None:
    """Jobs run in order: Table 12's combination after its members in one sweep is fine (``make smoke`` runs it
    so); before them it is refused up front. A bad checkpoint in every job keeps the sweep from starting."""
    proc = _cli("detect", "-m", f"experiment={cells}", "resume_from=/nonexistent.ckpt", tmp=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "resume_from" in out and "Traceback" not in out, out
    assert ("detector.members" in out) is members_missing, out
    assert not members_missing or "detector.members (job #0 of 3)" in out, out
    assert list(tmp_path.rglob("*")) == []


def test_full_error_adds_the_stack_and_still_prints_the_message_once(tmp_path: Path) -> None:
    proc = _cli("train", "data=imagenet", tmp=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" in out and "PreflightError" in out
    assert out.count("error: data.root") == 1


def test_help_and_config_errors_import_no_torch(tmp_path: Path) -> None:
    """The start-up target (≤ 3 s on an idle machine, measured by `make bench`): nothing heavy before the exit."""
    for module, args, code in [("train", ["--help"], 0), ("train", ["data=imagenet"], 2)]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", f"sppnet_exp.{module}", *args, *_paths(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == code, proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
        imported = {line.rsplit("|", 1)[1].strip() for line in lines}
        assert not imported & {"torch", "lightning", "torchvision", "numpy"}, sorted(imported)


# ----- in-process: the checks themselves ---------------------------------------------------------------------------
def _compose(name: str, *overrides: str, tmp: Path):  # noqa: ANN202
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(name, overrides=[*_paths(tmp), *overrides])


def test_every_experiment_belongs_to_its_commands() -> None:
    names = experiment_names()
    assert "table2/zf5_spp_single" in names and "table12/combination" in names
    for name in names:
        table = name.split("/")[0]
        expected = (
            ["detect"]
            if table in ("table9", "table10", "table12")
            else ["transfer"]
            if table in ("table6", "table7")
            else ["train", "eval"]
        )
        assert commands_for(name) == expected, name
    assert argv_problems("train", ["experiment=table2/zf5_nospp,table2/zf5_spp_multi", "seed=1"]) == []
    assert argv_problems("detect", ["-m", "experiment=table9/spp_1scale,table10/rcnn_zf5"]) == []
    [p] = argv_problems("train", ["-m", "experiment=table2/zf5_nospp,table9/spp_1scale"])
    assert p.example == "python -m sppnet_exp.detect -m experiment=table9/spp_1scale"


def test_good_inputs_pass(tmp_path: Path) -> None:
    """Right roots give no problem: a classification root with train/ and val/, a VOC root two levels down."""
    (tmp_path / "ilsvrc" / "train").mkdir(parents=True)
    (tmp_path / "ilsvrc" / "val").mkdir()
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    assert check_inputs(_compose("train", tmp=tmp_path), "train") == []  # the generated set: nothing to check
    imagenet = _compose("train", "data=imagenet", f"data.root={tmp_path / 'ilsvrc'}", tmp=tmp_path)
    assert check_inputs(imagenet, "train") == []
    cfg = _compose("detect", "experiment=table9/spp_1scale", "data=voc", f"data.root={tmp_path}", tmp=tmp_path)
    assert check_inputs(cfg, "detect") == []
    assert check_inputs(_compose("detect", "experiment=table9/timing", tmp=tmp_path), "detect") == []


def test_message_format_applies_the_fixes_to_the_users_command_line(tmp_path: Path) -> None:
    cfg = _compose("train", "data=imagenet", "data.root=/nope", tmp=tmp_path)
    problems = check_inputs(cfg, "train")
    text = format_problems("train", problems, ["data=imagenet", "data.root=/nope", "seed=3"])
    first, *_, last = text.splitlines()
    assert first == "sppnet-train: error: data.root: /nope does not exist"
    assert last == "  example:  python -m sppnet_exp.train data=imagenet data.root=/path/to/ILSVRC2012 seed=3"


@pytest.mark.parametrize(
    ("command", "overrides", "key", "expected"),
    [
        ("train", ["data=voc07", "data.root=/x"], "data", "voc07_cls"),
        ("train", ["scale=detect_paper"], "scale", "embedded | paper"),
        ("detect", ["experiment=table9/spp_1scale", "data=imagenet"], "data", "scenes"),
        ("detect", ["experiment=table9/spp_1scale", "scale=paper"], "scale", "detect_embedded | detect_paper"),
    ],
)
def test_a_data_or_scale_of_the_other_kind_of_task_is_named(
    command: str, overrides: list[str], key: str, expected: str, tmp_path: Path
) -> None:
    """`data` and `scale` hold both kinds' options (the group names are the keys they set): a detection dataset
    for training, or a classification scale for detection, is one line naming the right options."""
    problems = check_inputs(_compose(command, *overrides, tmp=tmp_path), command)
    assert [p.key for p in problems] == [key] and expected in problems[0].expected
    # a dataset of the right kind passes this check (and goes on to the root's)
    voc = check_inputs(_compose("detect", "experiment=table9/spp_1scale", "data=voc07", tmp=tmp_path), "detect")
    assert [p.key for p in voc] == ["data.root"]
