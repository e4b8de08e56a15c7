#!/bin/bash
# Issue 23's check that the restructure changed no number: Table 9 from scratch (its two pretrained Table 2 cells,
# zf5_spp_single and alexnet_nospp seed 0, trained first) into a fresh output folder (runs, caches, proposals),
# then its results.json metrics compared run by run with a runs root made by the code before the change
# (default outputs/runs), timing metrics left out. Same machine, same thread count (2), nothing else running.
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-outputs/exp/i23}
BEFORE=${BEFORE:-outputs/runs}
rm -rf "$OUT/runs" "$OUT/cache" "$OUT/before"
mkdir -p "$OUT"
s=$(date +%s)
.venv/bin/python -m sppnet_exp.table table9 paths.output_dir="$OUT" > "$OUT/table9.log" 2>&1 || { echo "failed: $OUT/table9.log"; exit 1; }
echo "table 9 from scratch (pretraining included): $(( $(date +%s) - s )) s" | tee "$OUT/time.txt"
for run in "$OUT"/runs/*/generated-embedded-s0-*; do   # the same cells, as the code before the change ran them
  cell=$(basename "$(dirname "$run")"); old="$BEFORE/$cell/$(basename "$run")"  # the same identity
  if [ ! -f "$old/results.json" ]; then   # a change that moved the identity: the one earlier run of the cell
    others=("$BEFORE/$cell/$(basename "$run" | sed 's/-[0-9a-f]*$//')"-*)
    [ ${#others[@]} -eq 1 ] && [ -f "${others[0]}/results.json" ] || { echo "$cell: no single run before the change"; continue; }
    old=${others[0]}; echo "$cell: identity $(basename "$old") -> $(basename "$run")"
  fi
  mkdir -p "$OUT/before/$cell/$(basename "$old")" && cp "$old/results.json" "$OUT/before/$cell/$(basename "$old")/"
done
.venv/bin/python -m sppnet_exp.reporting.same_results --common "$OUT/before" "$OUT/runs" | tee "$OUT/same_results.txt"
