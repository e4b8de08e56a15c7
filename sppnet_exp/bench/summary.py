"""Markdown from benchmark JSON: the summary of one run, the blocks the READMEs quote, two runs side by side.

Every figure is written as ``median [lo, hi]``: the median over pairs (or rounds) and its 95% distribution-free
interval (:mod:`sppnet_exp.utils.paired`). The READMEs quote the published JSON (``experiments/bench/bench.json``)
through :func:`readme_blocks`, between ``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->`` markers, so a
figure in a README is always the one a run measured, with its interval and machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sppnet_exp.bench.startup import startup_lines, startup_readme_line
from sppnet_exp.utils.paired import fmt

__all__ = ["compare_markdown", "fmt", "machine_line", "readme_blocks", "replace_blocks", "summary_markdown"]


def _verdict(s: Mapping[str, Any]) -> str:
    if "target" not in s:
        return ""
    v = s["verdict"]
    return f"{s['op']} {s['target']:g}: **{v}**" if v != "meets" else f"{s['op']} {s['target']:g}: meets"


def machine_line(meta: Mapping[str, Any]) -> str:
    """One line naming the machine, its load before/after and the thread counts."""
    m = meta.get("machine", {})
    th = meta.get("threads", {})
    load = lambda v: "/".join(f"{x:.2f}" for x in v) if v else "n/a"  # noqa: E731
    torch_v = (m.get("versions") or {}).get("torch")
    return (
        f"{m.get('cpu_model', '?')}, {m.get('usable_cores', '?')} of {m.get('cores', '?')} cores, "
        f"{m.get('memory_gb', '?')} GB, device {m.get('device', 'cpu')}; load (1/5/15 min) before "
        f"{load(m.get('load_before'))}, after {load(m.get('load_after'))}; torch {torch_v}, "
        f"{th.get('torch_threads', '?')} threads (inter-op {th.get('interop_threads', '?')})"
    )


def _pairs_note(r: Mapping[str, Any]) -> str:
    n = len(r.get("pairs", []))
    cov = next(iter(r.get("derived", {}).values()), {}).get("coverage")
    cov_s = f", interval coverage {100 * cov:.1f}%" if cov is not None else ""
    return f"{n} pairs after {r.get('warmup', 0)} warm-up round(s), stopped: {r.get('stopped', '?')}{cov_s}"


def _data(r: Mapping[str, Any]) -> list[str]:
    lines = ["## Data loading (training loader)", "", "| workers | images/s |", "|---|---|"]
    lines += [f"| {x['num_workers']} | {fmt(x['images_per_s'], 0)} |" for x in r["results"]]
    return [*lines, "", f"{r['batches_per_round']} batches of {r['batch_size']} per round.", ""]


def _overhead(r: Mapping[str, Any]) -> list[str]:
    s, d = r["sides"], r["derived"]["overhead"]
    return [
        "## Training: Lightning vs a bare PyTorch loop (same model, same batches, paired rounds)",
        "",
        f"{r['model']} {r['mode']}, crop {r['crop']}, width {r['width']}, batch {r['batch_size']}, "
        f"{r['timed_steps_per_round']} timed steps per round; {_pairs_note(r)}.",
        "",
        "| loop | images/s |",
        "|---|---|",
        f"| bare PyTorch | {fmt(s['bare']['images_per_s'], 1)} |",
        f"| Lightning + SPPClassifier | {fmt(s['lightning']['images_per_s'], 1)} |",
        "",
        f"Overhead (per pair): **{fmt(d, 1, 100, ' %')}** (target ≤ {100 * d['target']:.0f} %: {d['verdict']}).",
        "",
    ]


def _spp_head(r: Mapping[str, Any]) -> list[str]:
    lines = [
        "## SPP head vs fixed pool5 head (pool + fc6, paired rounds)",
        "",
        "| setting | head | fc6 in | forward ms | fwd+bwd ms |",
        "|---|---|---|---|---|",
    ]
    for row in r["results"]:
        for head in ("spp", "nospp"):
            s = row["sides"][head]
            lines.append(
                f"| {row['setting']} | {head} | {row['fc6_in'][head]} | {fmt(s['forward_ms'])} | "
                f"{fmt(s['forward_backward_ms'])} |"
            )
        d = row["derived"]
        lines.append(
            f"| {row['setting']} | spp / nospp | | {fmt(d['forward_ratio'])} | {fmt(d['forward_backward_ratio'])} |"
        )
    return [*lines, ""]


def _detection(r: Mapping[str, Any]) -> list[str]:
    lin = r["rcnn_linearity"]
    per = ", ".join(f"{x['windows']}: {1e3 * x['conv_s']:.1f}" for x in lin["per_window_s"])
    lines = [
        "## Detection: SPP-net vs R-CNN per image (same backbone, same windows, paired rounds)",
        "",
        f"{r['backbone']}, image {r['image'][1]}x{r['image'][0]} (w x h), {r['windows']} windows, "
        f"{r['threads']} threads; {_pairs_note(r)}.",
        "",
        f"R-CNN is timed on a fixed subset of {r['rcnn_windows_timed']} windows per pair and scaled by the window "
        f"count (x{r['rcnn_scale']:.2f}): its conv cost per window (ms) at each window count is {per} "
        f"(max deviation {100 * lin['max_deviation']:.1f}%, "
        f"{'linear' if lin['linear'] else 'NOT linear'} within {100 * lin['tolerance']:.0f}%).",
        "",
        "| method | conv s | fc s | other s | total s |",
        "|---|---|---|---|---|",
    ]
    for name, t in r["methods"].items():
        lines.append(f"| {name} | {t['conv_s']:.3f} | {t['fc_s']:.3f} | {t['other_s']:.3f} | {t['total_s']:.3f} |")
    lines += [
        "",
        "Medians over pairs (R-CNN scaled to all windows).",
        "",
        "| figure | per pair | target |",
        "|---|---|---|",
    ]
    for name, d in r["derived"].items():
        digits = 3 if name.endswith("frac") else 1
        lines.append(f"| {name} | {fmt(d, digits)} | {_verdict(d)} |")
    return [*lines, ""]


def _proposals(r: Mapping[str, Any]) -> list[str]:
    return [
        "## Proposals (selective search fast, OpenCV, 1 thread)",
        "",
        f"image {r['image'][0]}x{r['image'][1]}: {fmt(r['seconds'])} s/image, "
        f"{fmt(r['images_per_s_per_core'])} images/s per core, {r['proposals']:.0f} proposals "
        f"({len(r['rounds'])} rounds).",
        "",
    ]


def _paper_scale(r: Mapping[str, Any]) -> list[str]:
    d, st = r["voc07_disk_gb"], r["settings"]
    lines = [
        "## Detection at the paper's scale: per image, and VOC 2007 extrapolated",
        "",
        f"ZF-5 / AlexNet at full width (random weights), a {r['stages']['conv5_1scale'].get('image', '500x375')} "
        f"scene, 2,000 windows, scales {st['scales_1']} and {st['scales_5']}; device {r['device']}, "
        f"{r['threads']} threads. Each stage ran in its own process.",
        "",
        "| stage | s / image (this CPU) | disk / image (MB) | RSS measured (GB) | RSS at VOC07 (GB) |",
        "|---|---|---|---|---|",
    ]
    for name, s in r["stages"].items():
        sec = s.get("s_per_image", s.get("s_per_batch"))
        unit = " / batch" if "s_per_batch" in s else ""
        disk = s.get("disk_bytes_per_image", s.get("chunk_bytes_per_image", 0)) / 1e6
        lines.append(f"| {name} | {sec:.3f}{unit} | {disk:.2f} | {s['rss_gb']:.2f} | {s['voc07_rss_gb']:.2f} |")
    lines += ["", "| VOC07 figure | value | target | |", "|---|---|---|---|"]
    for key, target in r["targets"].items():
        value = r["peak_rss_gb"] if key == "peak_rss_gb" else d[key.split(".")[1]]
        lines.append(f"| {key} | {value:.1f} | <= {target:g} | {'meets' if r['meets'][key] else '**misses**'} |")
    lines += ["", "VOC07 per-stage memory: " + ", ".join(f"{k} {v:.1f} GB" for k, v in r["voc07_rss_gb"].items()) + "."]
    lines += ["", "Formulas: " + "; ".join(f"{k}: {v}" for k, v in r["formulas"].items()) + "."]
    lines += ["", "Assumed: " + ", ".join(f"{k} = {v}" for k, v in r["assumed"].items()) + ".", ""]
    return lines


def _loader(r: Mapping[str, Any]) -> list[str]:
    s, d, j, sp, b = r["sides"], r["derived"], r["jpegs"], r["derived"]["speedup_per_core"], r["bytes_ratio"]
    lines = [
        "## Input pipeline: float32 workers vs uint8 workers (ImageNet geometry, paired rounds)",
        "",
        f"{j['images']} generated {j['size_hw'][1]}x{j['size_hw'][0]} JPEGs (q{j['quality']}, {j['mean_kb']} KB "
        f"mean), resize 256, 224 crops, flip, PCA lighting; {r['workers']} workers, batch {r['batch_size']}, "
        f"{r['batches_per_round']} batches per round; {_pairs_note(r)}. Per core = images per CPU-second of "
        "the workers and the main process.",
        "",
        "| worker output | images/s per core | images/s (wall) | bytes per batch | cores for 6,000 images/s |",
        "|---|---|---|---|---|",
    ]
    for name in ("float32", "uint8"):
        lines.append(
            f"| {name} | {fmt(s[name]['images_per_s_per_core'], 0)} | {fmt(s[name]['images_per_s'], 0)} | "
            f"{r['bytes_per_batch'][name] / 2**20:.2f} MiB | {fmt(d[f'cores_for_6000_{name}'], 1)} |"
        )
    lines += [
        "",
        f"Speed-up per core (per pair): **{fmt(sp)}** (target ≥ {sp['target']:g}: {sp['verdict']}); wall "
        f"{fmt(d['speedup_wall'])}. Bytes per batch: {b['value']:.2f}x fewer (target ≥ {b['target']:g}: "
        f"{b['verdict']}). The uint8 path's device finish: {fmt(r['device_finish_cpu']['ms_per_batch'], 1)} ms "
        f"per batch when the device is this CPU.",
        "",
    ]
    g = r.get("gpu", {})
    if "decode_gpu" in g:
        t = g["train_step_bf16"]
        lines.append(
            f"GPU ({g['device']}): device-decode loader {fmt(g['decode_gpu']['images_per_s'], 0)} images/s; ZF-5 "
            f"training step at {t['input']}, bf16, channels-last, batch {t['batch_size']}: "
            f"{fmt(t['images_per_s'], 0)} images/s."
        )
    else:
        lines.append(f"GPU figures: not measured ({g.get('reason', 'no GPU')}).")
    return [*lines, ""]


_SECTIONS = {
    "startup": startup_lines,
    "data": _data,
    "train_overhead": _overhead,
    "spp_head": _spp_head,
    "detection": _detection,
    "proposals": _proposals,
    "paper_scale": _paper_scale,
    "loader": _loader,
}


def section_lines(name: str, result: Mapping[str, Any]) -> list[str]:
    """The Markdown section of one benchmark (registered in ``_SECTIONS``)."""
    return _SECTIONS[name](result)


def register_section(name: str, render: Any) -> None:
    """Let a benchmark module add its own section renderer (``render(result) -> list[str]``)."""
    _SECTIONS[name] = render


def summary_markdown(results: Mapping[str, Any]) -> str:
    """The Markdown summary of whatever benchmarks ran (``results`` = {"meta": .., name: result})."""
    meta = results["meta"]
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {machine_line(meta)}.",
        "",
        "Figures: median [95% distribution-free interval] over paired rounds (each pair runs every side back to "
        "back, in alternating order; ratios are taken per pair). A target is met only when the whole interval "
        "meets it, missed when the whole interval misses it, undecided (noise) otherwise.",
        "",
    ]
    for name in _SECTIONS:
        if name in results:
            lines += section_lines(name, results[name])
    return "\n".join(lines)


def readme_blocks(results: Mapping[str, Any]) -> dict[str, str]:
    """The text of each README block, from the published results: ``{"bench": .., "detection": ..}``."""
    meta = results["meta"]
    date = meta.get("date", "")
    head = f"Last published `make bench` ({date}; {machine_line(meta)}). Median [95% interval] over paired rounds."
    lines = [head, ""]
    if "data" in results:
        lines.append(
            "- Training loader: "
            + ", ".join(
                f"{fmt(x['images_per_s'], 0)} images/s with {x['num_workers']} workers"
                for x in results["data"]["results"]
            )
            + "."
        )
    if "train_overhead" in results:
        r = results["train_overhead"]
        s, d = r["sides"], r["derived"]["overhead"]
        lines.append(
            f"- Training ZF-5 (embedded): bare PyTorch {fmt(s['bare']['images_per_s'], 0)} images/s, Lightning + "
            f"`SPPClassifier` {fmt(s['lightning']['images_per_s'], 0)}; overhead per pair {fmt(d, 1, 100, ' %')} "
            f"(target ≤ {100 * d['target']:.0f} %: {d['verdict']})."
        )
    if "spp_head" in results:
        row = results["spp_head"]["results"][0]
        lines.append(
            f"- Pool + fc6 forward+backward, {row['setting']}, batch {row['batch']}: SPP "
            f"{fmt(row['sides']['spp']['forward_backward_ms'], 0)} ms vs pool5 "
            f"{fmt(row['sides']['nospp']['forward_backward_ms'], 0)} ms (ratio "
            f"{fmt(row['derived']['forward_backward_ratio'])})."
        )
    if "detection" in results:
        det = _det_line(results["detection"])
        lines.append(f"- Detection per image ([Table 9's notes](experiments/table9/README.md#speed)): {det}")
    if "proposals" in results:
        p = results["proposals"]
        lines.append(
            f"- Selective search (OpenCV fast, 1 thread, {p['image'][1]}x{p['image'][0]}): {fmt(p['seconds'])} s per "
            f"image, ~{p['proposals']:.0f} proposals."
        )
    if "loader" in results:
        r, sp = results["loader"], results["loader"]["derived"]["speedup_per_core"]
        lines.append(
            f"- Input pipeline ({r['jpegs']['size_hw'][1]}x{r['jpegs']['size_hw'][0]} JPEGs, 224 crops, "
            f"{r['workers']} workers): {fmt(r['sides']['float32']['images_per_s_per_core'], 0)} images/s per core "
            f"with float32 workers, {fmt(r['sides']['uint8']['images_per_s_per_core'], 0)} with uint8 workers "
            f"(x{fmt(sp)}, target ≥ {sp['target']:g}: {sp['verdict']}); {r['bytes_ratio']['value']:.2f}x fewer bytes "
            f"per batch; {r['cores_for_6000']:.0f} cores for 6,000 images/s."
        )
    if "startup" in results:
        line, note = startup_readme_line(results["startup"]), _own_meta_note(results["startup"], meta)
        lines.append(f"{line.removesuffix('.')}{note}." if note else line)
    blocks = {"bench": "\n".join(lines)}
    if "detection" in results:
        blocks["detection"] = "\n".join([head, "", *_detection(results["detection"])[2:]]).rstrip()
    if "paper_scale" in results:
        blocks["paper_scale"] = "\n".join([head, "", *_paper_scale(results["paper_scale"])[2:]]).rstrip()
    return blocks


def _det_line(r: Mapping[str, Any]) -> str:
    d = r["derived"]
    c1, c5 = d["conv_speedup_1scale"], d["conv_speedup_5scale"]
    return (
        f"Conv-time speed-up over R-CNN {fmt(c1, 0)}x (1 scale, target ≥ {c1['target']:g}: {c1['verdict']}) and "
        f"{fmt(c5, 1)}x (5 scales, ≥ {c5['target']:g}: {c5['verdict']}); total {fmt(d['speedup_1scale'], 1)}x and "
        f"{fmt(d['speedup_5scale'], 1)}x."
    )


_BLOCK = re.compile(r"(<!-- bench:(?P<name>[a-z_]+):begin -->\n)(?P<body>.*?)\n?(<!-- bench:(?P=name):end -->)", re.S)


def replace_blocks(text: str, blocks: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` with every marked block whose name is in ``blocks`` rewritten; also the names replaced."""
    done: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in blocks:
            return m.group(0)
        done.append(name)
        return m.group(1) + blocks[name] + "\n" + m.group(4)

    return _BLOCK.sub(sub, text), done


def current_blocks(text: str) -> dict[str, str]:
    """The bodies of the marked blocks in ``text``."""
    return {m.group("name"): m.group("body") for m in _BLOCK.finditer(text)}


def _derived_figures(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every compared figure of a run: ``bench/figure`` -> its interval summary."""
    out: dict[str, Mapping[str, Any]] = {}
    for name, r in results.items():
        if name == "meta" or not isinstance(r, Mapping):
            continue
        for fig, s in r.get("derived", {}).items():
            out[f"{name}/{fig}"] = s
        for row in r.get("results", []):
            if isinstance(row, Mapping):
                for fig, s in row.get("derived", {}).items():
                    out[f"{name}/{row.get('setting', '')}/{fig}"] = s
    return out


def compare_markdown(a: Mapping[str, Any], b: Mapping[str, Any], labels: tuple[str, str] = ("run 1", "run 2")) -> str:
    """Two runs side by side: each compared figure's median and interval, and whether the intervals overlap."""
    fa, fb = _derived_figures(a), _derived_figures(b)
    lines = [
        f"| figure | {labels[0]} | {labels[1]} | intervals overlap |",
        "|---|---|---|---|",
    ]
    for key in fa:
        if key not in fb:
            continue
        x, y = fa[key], fb[key]
        overlap = max(x["lo"], y["lo"]) <= min(x["hi"], y["hi"])
        digits = 3 if abs(float(x["median"])) < 1 else 1
        lines.append(f"| {key} | {fmt(x, digits)} | {fmt(y, digits)} | {'yes' if overlap else '**no**'} |")
    return "\n".join(
        [f"{labels[0]}: {machine_line(a['meta'])}", "", f"{labels[1]}: {machine_line(b['meta'])}", "", *lines]
    )


def read_run(folder: str | Path) -> dict[str, Any]:
    """A bench run from its folder of ``<name>.json`` files (each carries the shared ``meta``), or one
    combined JSON file."""
    import json

    p = Path(folder)
    if p.is_file():
        return json.loads(p.read_text())
    out: dict[str, Any] = {}
    for f in sorted(p.glob("*.json")):
        data = json.loads(f.read_text())
        out["meta"] = data.pop("meta", out.get("meta", {}))
        out[f.stem] = data
    if not out:
        raise FileNotFoundError(f"no benchmark JSON in {p}")
    return out


PUBLISHED = Path("experiments/bench/bench.json")
QUOTING = (Path("README.md"), Path("experiments/table9/README.md"))


def merge_sections(published: Mapping[str, Any], partial: Mapping[str, Any]) -> dict[str, Any]:
    """``published`` with the sections of a partial bench run (``--only NAME``) replaced or added; each added
    section keeps the partial run's ``meta`` as its own (its date and machine differ from the published run's),
    which the README line names."""
    out = {k: v for k, v in published.items()}
    for name, section in partial.items():
        if name != "meta":
            out[name] = {**section, "meta": partial.get("meta", {})}
    return out


def _own_meta_note(section: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """`` (measured DATE on MACHINE)`` for a section merged in with its own meta, else empty."""
    own = section.get("meta")
    if not own or own == meta:
        return ""
    return f" (measured {own.get('date', '?')}; {machine_line(own)})"


def publish(run_dir: str | Path, repo: str | Path = ".", add: bool = False) -> list[str]:
    """Copy a bench run into ``experiments/bench/bench.json`` and rewrite the READMEs' bench blocks from it.

    ``add``: merge the run's sections into the published JSON instead (a ``--only`` run), each with its own
    date and machine."""
    import json

    from sppnet_exp.utils.io import atomic_write_json, atomic_write_text

    repo = Path(repo)
    results = read_run(run_dir)
    if add:
        results = merge_sections(json.loads((repo / PUBLISHED).read_text()), results)
    atomic_write_json(repo / PUBLISHED, results)
    blocks = readme_blocks(results)
    changed = []
    for rel in QUOTING:
        path = repo / rel
        text, done = replace_blocks(path.read_text(), blocks)
        if done:
            atomic_write_text(path, text)
            changed += [f"{rel}:{name}" for name in done]
    return changed


def main(argv: list[str] | None = None) -> None:
    """``python -m sppnet_exp.bench.summary publish DIR`` | ``compare DIR_A DIR_B`` | ``show DIR``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish", help="copy a run to experiments/bench/ and update the README blocks")
    pub.add_argument("run")
    pub.add_argument("--add", action="store_true", help="merge a --only run into the published one")
    cmp = sub.add_parser("compare", help="two runs side by side, with interval overlap")
    cmp.add_argument("a")
    cmp.add_argument("b")
    sub.add_parser("show", help="the summary of a run").add_argument("run")
    args = parser.parse_args(argv)
    if args.cmd == "publish":
        for item in publish(args.run, add=args.add):
            print(f"updated {item}")
    elif args.cmd == "compare":
        print(compare_markdown(read_run(args.a), read_run(args.b), (str(args.a), str(args.b))))
    else:
        print(summary_markdown(read_run(args.run)))


if __name__ == "__main__":
    main()
