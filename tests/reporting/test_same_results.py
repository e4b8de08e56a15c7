"""``reporting.same_results``: runs of the same cell, data, scale and seed are paired whatever their fingerprint;
a changed metric, a missing run and a changed identity are each reported; timing is left out by default."""

from __future__ import annotations

import json
from pathlib import Path

from sppnet_exp.reporting.same_results import compare_roots, main


def _run(root: Path, cell: str, name: str, metrics: dict, status: str = "finished") -> None:
    d = root / cell / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"status": status, "metrics": metrics}))


def test_pairs_by_cell_data_scale_seed_and_names_what_differs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    m = {"10view": {"top1_err": 7.25, "n": 800}, "ftfc7": {"mAP": 90.1, "time_s": 1.0}}
    _run(a, "zf5", "generated-embedded-s0-1234abcd", m)
    _run(b, "zf5", "generated-embedded-s0-1234abcd", {**m, "ftfc7": {"mAP": 90.1, "time_s": 2.0}})
    _run(a, "spp", "generated-embedded-s0-aaaaaaaa", {"ftfc7": {"mAP": 80.0}})
    _run(b, "spp", "generated-embedded-s0-bbbbbbbb", {"ftfc7": {"mAP": 80.0}})
    lines, same = compare_roots(a, b)
    assert same, lines
    assert (
        "spp/generated-embedded-s0 (identity generated-embedded-s0-aaaaaaaa -> generated-embedded-s0-bbbbbbbb)"
        in (lines[0])
    )
    assert not compare_roots(a, b, timing=True)[1]  # the timing metric differs
    _run(b, "zf5", "generated-embedded-s1-1234abcd", m)  # only under b
    _run(a, "zf5", "generated-embedded-s2-1234abcd", m, status="running")  # unfinished: not a run to compare
    (b / "zf5" / "generated-embedded-s0-1234abcd" / "results.json").write_text(
        json.dumps({"status": "finished", "metrics": {"10view": {"top1_err": 7.5, "n": 800}}})
    )
    lines, same = compare_roots(a, b)
    assert not same
    text = "\n".join(lines)
    assert f"zf5/generated-embedded-s1: no finished run under {a}" in text
    assert "10view.top1_err: 7.25 vs 7.5" in text and "ftfc7.mAP: 90.1 vs —" in text
    assert compare_roots(a, b, tol=0.5)[1] is False  # the missing mAP and the missing run stay differences
    lines, _ = compare_roots(a, b, tol=0.5, common=True)  # only what both have: the mAP is listed, not compared
    assert any(
        "zf5/generated-embedded-s0: 2 metrics equal (on one side only, not compared: ftfc7.mAP" in ln for ln in lines
    )
    assert main([str(a), str(a)]) == 0 and main([str(a), str(b)]) == 1
