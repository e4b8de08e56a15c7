"""The benchmark runner writes its JSON (raw pairs, machine, intervals) and Markdown; README figures come from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sppnet_exp.bench.run import main
from sppnet_exp.bench.summary import (
    PUBLISHED,
    QUOTING,
    compare_markdown,
    current_blocks,
    publish,
    read_run,
    readme_blocks,
)
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[2]


def _check_meta(meta: dict) -> None:
    m = meta["machine"]
    assert m["cpu_model"] and m["cores"] >= 1 and len(m["load_before"]) == 3 and len(m["load_after"]) == 3
    assert m["versions"]["torch"] and meta["threads"]["torch_threads"] >= 1


def test_spp_head_bench_writes_pairs_intervals_and_summary(tmp_path: Path) -> None:
    main(["--quick", "--only", "spp_head", "--out", str(tmp_path)])
    out = json.loads((tmp_path / "spp_head.json").read_text())
    _check_meta(out["meta"])
    row = out["results"][0]
    assert row["fc6_in"] == {"spp": 256 * 50, "nospp": 256 * 36}
    assert len(row["pairs"]) == 2 and set(row["pairs"][0]) == {"spp", "nospp"}
    ratio = row["derived"]["forward_backward_ratio"]
    assert ratio["lo"] <= ratio["median"] <= ratio["hi"] and ratio["n"] == 2
    assert "SPP head vs fixed pool5 head" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_training_overhead_and_data_benches_run(tmp_path: Path) -> None:
    overrides = [o for o in TINY if not o.startswith("trainer.")] + [f"paths.data_dir={tmp_path}/data"]
    main(["--quick", "--only", "data,train_overhead", "--out", str(tmp_path), *overrides])
    over = json.loads((tmp_path / "train_overhead.json").read_text())
    assert over["sides"]["bare"]["images_per_s"]["median"] > 0
    assert "overhead" in over["derived"] and len(over["pairs"]) == 2
    assert json.loads((tmp_path / "data.json").read_text())["results"][0]["images_per_s"]["median"] > 0


def test_detection_bench_writes_timings_linearity_and_verdicts(tmp_path: Path) -> None:
    main(["--quick", "--only", "detection,proposals", "--out", str(tmp_path)])
    det = json.loads((tmp_path / "detection.json").read_text())
    assert set(det["methods"]) == {"spp_1scale", "spp_5scale", "rcnn"}
    for t in det["methods"].values():
        assert t["conv_s"] > 0 and t["fc_s"] > 0 and t["total_s"] > t["conv_s"]
    assert {p for pair in det["pairs"] for p in pair} == {"spp_1scale", "spp_5scale", "rcnn"}
    assert set(det["targets"]) <= set(det["derived"])
    assert all("verdict" in det["derived"][k] for k in det["targets"])
    lin = det["rcnn_linearity"]
    assert [r["windows"] for r in lin["per_window_s"]] == lin["counts"] and "linear" in lin
    assert json.loads((tmp_path / "proposals.json").read_text())["images_per_s_per_core"]["median"] > 0
    text = (tmp_path / "summary.md").read_text()
    assert "SPP-net vs R-CNN" in text and "fixed subset" in text


def test_published_figures_are_what_the_readmes_quote() -> None:
    """The README blocks are rendered from the committed bench JSON, never edited by hand."""
    results = read_run(REPO / PUBLISHED)
    expected = readme_blocks(results)
    seen = {}
    for rel in QUOTING:
        seen.update(current_blocks((REPO / rel).read_text()))
    assert set(seen) == set(expected), "every README bench block is one the publisher writes"
    for name, body in seen.items():
        assert body == expected[name], f"README block {name!r} differs from {PUBLISHED}: run `make bench-publish`"


def test_publish_rewrites_the_marked_blocks_and_compare_shows_both_runs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for rel in QUOTING:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("intro\n<!-- bench:bench:begin -->\nold\n<!-- bench:bench:end -->\noutro\n")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(REPO / PUBLISHED, run / "all.json")
    changed = publish(REPO / PUBLISHED, repo)
    assert changed == [f"{rel}:bench" for rel in QUOTING]
    text = (repo / QUOTING[0]).read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert json.loads((repo / PUBLISHED).read_text())["meta"] == read_run(REPO / PUBLISHED)["meta"]
    table = compare_markdown(read_run(REPO / PUBLISHED), read_run(REPO / PUBLISHED))
    assert "| intervals overlap |" in table and "**no**" not in table


def test_paper_scale_stage_runs_in_process() -> None:
    """One paper-scale stage at a tiny size, in this process (the full section runs each stage in a subprocess
    for its own peak RSS and takes minutes): its scene, windows and selective search are the shared ones."""
    from sppnet_exp.bench.paper_scale import stage_proposals

    r = stage_proposals(short=96, windows=40, images=1)
    assert r["s_per_image"] > 0 and r["boxes"] > 0 and r["disk_bytes_per_image"] == 40 * 16 + 128 and r["rss_gb"] > 0


def test_startup_bench_times_help_and_a_config_error(tmp_path: Path) -> None:
    """``make bench``'s start-up section: wall times, exit codes, the key named, nothing heavy imported or left."""
    from sppnet_exp.bench.startup import CASES, bench_startup, startup_lines

    cases = {k: CASES[k] for k in ("train_help", "train_missing_root")}
    r = bench_startup(runs=1, cases=cases)
    for name in cases:
        c = r["cases"][name]
        assert c["exit_codes"] == [c["expected_exit_code"]] and c["names_key"], c
        assert c["heavy_imports"] == [] and c["left_behind"] == [], c
        assert 0 < c["wall_s"]["median"] < 60 and c["wall_s"]["target"] == 3.0
    assert r["checks_pass"]
    text = "\n".join(startup_lines(r))
    assert "| `sppnet_exp.train data=imagenet` (train_missing_root) |" in text
    meta = {"machine": {"load_before": [0, 0, 0]}, "threads": {}}
    assert "train_help" in readme_blocks({"meta": meta, "startup": r})["bench"]


def test_publish_add_merges_a_partial_run_with_its_own_machine(tmp_path: Path) -> None:
    """`make bench-publish ADD=1`: a `--only` run's sections join the published ones, each naming its own date."""
    from sppnet_exp.bench.summary import merge_sections

    published = {"meta": {"date": "2026-01-01", "machine": {"cpu_model": "A"}}, "other": {"x": 1}}
    startup = {"cases": {}, "checks_pass": True}
    partial = {"meta": {"date": "2026-02-02", "machine": {"cpu_model": "B"}}, "startup": startup}
    merged = merge_sections(published, partial)
    assert merged["meta"] == published["meta"] and merged["other"] == {"x": 1}
    assert merged["startup"]["meta"]["date"] == "2026-02-02" and merged["startup"]["cases"] == {}
    repo = tmp_path / "repo"
    (repo / PUBLISHED).parent.mkdir(parents=True)
    (repo / PUBLISHED).write_text(json.dumps(published))
    (repo / "README.md").write_text("<!-- bench:bench:begin -->\nold\n<!-- bench:bench:end -->\n")
    (repo / "experiments/table9").mkdir(parents=True)
    (repo / "experiments/table9/README.md").write_text("no blocks\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "startup.json").write_text(json.dumps({**startup, "meta": partial["meta"]}))
    assert publish(run, repo, add=True) == ["README.md:bench"]
    block = (repo / "README.md").read_text()
    assert "Last published `make bench` (2026-01-01" in block and "(measured 2026-02-02; B," in block
    assert json.loads((repo / PUBLISHED).read_text())["other"] == {"x": 1}
