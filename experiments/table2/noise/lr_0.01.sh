#!/bin/bash
# Issue 21 fit: the slowest-to-fit Table 2 cells at lr 0.005 (default, already measured) vs 0.01 (BN nets), idle machine.
cd "$(dirname "$0")/../../.."  # the repo root
T=outputs/exp/i21b
for lr in 0.01; do
  s=$(date +%s)
  .venv/bin/python -m sppnet_exp.train -m experiment=table2/overfeat7_nospp,table2/overfeat7_spp_single seed=0 data.gen_seed=1 scale.lr=$lr paths.runs_root=$T/runs_g1_lr$lr > $T/g1_lr$lr.log 2>&1
  .venv/bin/python -m sppnet_exp.train -m experiment=table2/zf5_spp_multi seed=1 data.gen_seed=1 scale.lr=$lr paths.runs_root=$T/runs_g1_lr$lr >> $T/g1_lr$lr.log 2>&1
  .venv/bin/python -m sppnet_exp.train -m experiment=table2/overfeat7_spp_multi,table2/zf5_nospp seed=0 scale.lr=$lr paths.runs_root=$T/runs_g0_lr$lr > $T/g0_lr$lr.log 2>&1
  echo "lr $lr $(( $(date +%s)-s )) s" >> $T/times.txt
done
echo done >> $T/times.txt
