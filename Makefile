# sppnet-exp: `make table2` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
STAMP  := $(VENV)/.installed
# Extra Hydra overrides for the table targets, e.g. `make table2 ARGS="data=imagenet data.root=/data/ilsvrc scale=paper trainer=ddp"`
ARGS   ?=
# Overrides for the report step (it picks the most recently updated data/scale by default), e.g. REPORT_ARGS="data=imagenet scale=paper"
REPORT_ARGS ?=
PYTEST_ARGS ?=
# Training seeds of `make table2` / `make table3` (one job per cell x seed; the report shows mean +- std and verify
# checks the paper's relations on the means, with standard errors): three on the embedded default (the noise figures
# of experiments/table2/README.md), e.g. SEEDS=0 for one.
SEEDS ?= 0,1,2


# `make smoke`: every table's pipeline on a few generated images, in its own runs and data root under the
# git-ignored outputs/ (removed first), W&B disabled, the reports in $(SMOKE_DIR)/reports (never experiments/).
SMOKE_DIR ?= outputs/smoke
SMOKE_ENV := WANDB_MODE=disabled OMP_NUM_THREADS=1
SMOKE_PATHS = paths.output_dir=$(SMOKE_DIR) paths.data_dir=$(SMOKE_DIR)/data
# Classification: the tests' tiny scale (64 px crops, width 1/8) on 5 generated classes x 8 images, one batch.
SMOKE_NET := scale.resize=72 scale.crop=64 scale.multi_size=52 scale.full_resize=72 scale.width=0.125 \
	scale.batch_size=8 scale.eval_batch_size=4 scale.max_epochs=1 ++data.gen_classes=5 ++data.gen_train_per_class=8 \
	++data.gen_val_per_class=3
SMOKE_TRAINER := +trainer.limit_train_batches=1 +trainer.limit_val_batches=1 +trainer.limit_test_batches=1 \
	trainer.accelerator=cpu trainer.enable_progress_bar=false trainer.enable_model_summary=false
# Detection: the nets of Table 2's run dirs (AlexNet and Table 12's seed-1 ZF-5 trained on the fly at the same
# scale), 3 classes, 8 + 4 generated scenes, 30 proposals on images shrunk to 128 px, a few fine-tuning steps, the
# AlexNet warp at 227/224 of the 64 px crop. The timing cells are left out: their R-CNN net is looked up at the
# default scale (it would be trained at full size).
SMOKE_PRETRAINED = pretrained.overrides=[$(shell printf "'%s'," $(SMOKE_NET) $(SMOKE_TRAINER) | sed 's/,$$//')]
# Table 7: the three ZF-5 columns on the smoke's Table 2 nets, 2 splits of 3 generated classes (6 + 5 images each).
SMOKE_TRANSFER := size=64 data.gen_classes=3 data.gen_train_per_class=8 data.gen_val_per_class=4 \
	data.train_per_class=6 data.test_per_class=5 'svm.C_grid=[0.1,10.0]' progress=false
# Table 6: the five columns on the smoke's Table 2 nets (seed 0), 3 generated classes in 12 + 9 VOC-layout scenes.
SMOKE_VOC := data.gen_classes=3 data.gen_train_per_class=4 data.gen_val_per_class=3 'svm.C_grid=[0.1,10.0]' \
	progress=false
SMOKE_DET = trainer=cpu progress=false workers=1 data.gen.trainval=8 data.gen.test=4 data.gen.num_classes=3 \
	scale.target_size=64 scale.scales_1=[100] scale.scales_5=[80,100,130] scale.rcnn_padding=4 \
	scale.alexnet_warp_size=65 scale.proposals.max_proposals=30 scale.proposals.min_size=6 \
	scale.proposals.max_side=128 scale.finetune.steps=4 scale.finetune.batch_size=32 scale.rcnn_finetune.steps=2 \
	scale.rcnn_finetune.batch_size=16 scale.rcnn_finetune.images_per_batch=2 svm.retrain_limit=200 \
	"$(SMOKE_PRETRAINED)"
SMOKE_DET_CELLS := table9/spp_1scale,table9/rcnn_alexnet,table10/spp_1scale,table10/rcnn_zf5,table12/net1,table12/net2,table12/combination

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || [ -x $(HOME)/.local/bin/uv ] || python3 -m pip install --user -q uv
	$(UV) venv -q --allow-existing --python 3.11 $(VENV)
	$(UV) pip install -q --python $(PY) --require-hashes -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv from requirements.lock (uv, hashes checked)

lock:  ## re-resolve requirements.in into requirements.lock (with hashes)
	$(UV) pip compile requirements.in --python-version 3.11 --generate-hashes --no-header -o requirements.lock

# Each table's runs are listed once, in the `sweep` of experiments/<table>/expected.yaml (beside its rows, columns and
# relations); `python -m sppnet_exp.table <table> --print` shows the multirun a target runs.
TABLES := table2 table3 table4 table6 table7 table9 table10 table12

table2: $(STAMP)  ## Table 2: 4 networks x 3 modes x SEEDS (multirun), then the report
table3: $(STAMP)  ## Table 3: single-view tests of Table 2's checkpoints (trains what is missing)
table4: $(STAMP)  ## Table 4: Overfeat-7 SPP's 10 crops vs views pooled from its feature maps (10, 96, 96 + 2 full)
table6: $(STAMP)  ## Table 6: VOC 2007 classification SVMs on Table 2's nets, 5 columns x SEEDS nets, then the report
table7: $(STAMP)  ## Table 7: Caltech101 SVMs on Table 2's nets, 4 columns + the warp, 10 random splits, then the report
table9: $(STAMP)  ## Table 9: SPP 1-sc / 5-sc and R-CNN (AlexNet) detection + timing (multirun), then the report
table10: $(STAMP)  ## Table 10: SPP vs R-CNN on the same ZF-5 (Table 9's SPP runs reused), then the report
table12: $(STAMP)  ## Table 12: two SPP-nets from different seeds, then their combination, then the report
$(TABLES):
	$(PY) -m sppnet_exp.table $@ --seeds $(SEEDS) $(ARGS)
	$(PY) -m sppnet_exp.report table=$@ $(REPORT_ARGS)

smoke: $(STAMP)  ## ~2 min: Tables 2, 3, 4, 6, 7, 9, 10, 12 end to end on a few images, into outputs/smoke only
	@case "$(SMOKE_DIR)" in *..*) echo "SMOKE_DIR must not contain .."; exit 2;; outputs/?*) ;; *) echo "SMOKE_DIR must be under outputs/ (git-ignored)"; exit 2;; esac
	rm -rf $(SMOKE_DIR)
	$(SMOKE_ENV) $(PY) -m sppnet_exp.train -m experiment=table2/zf5_nospp,table2/zf5_spp_single \
		$(SMOKE_NET) $(SMOKE_TRAINER) $(SMOKE_PATHS)
	@# Table 3's evaluation and the detection cells both start from Table 2's checkpoints: side by side.
	$(MAKE) --no-print-directory -j2 --output-sync=target smoke-table3 smoke-detect
	$(SMOKE_ENV) $(PY) -m sppnet_exp.transfer -m experiment=table7/a_nospp_crop,table7/b_spp_crop,table7/c_spp_full \
		seed=0,1 $(SMOKE_TRANSFER) "$(SMOKE_PRETRAINED)" $(SMOKE_PATHS)
	$(SMOKE_ENV) $(PY) -m sppnet_exp.transfer -m experiment=table6/a_nospp_crop,table6/b_spp_crop,table6/c_spp_full \
		size=64 $(SMOKE_VOC) "$(SMOKE_PRETRAINED)" $(SMOKE_PATHS)
	$(SMOKE_ENV) $(PY) -m sppnet_exp.transfer -m experiment=table6/d_spp_full_best,table6/e_overfeat7_full_best \
		size_grid.base=64 'size_grid.factors=[1.0,1.5]' $(SMOKE_VOC) "$(SMOKE_PRETRAINED)" $(SMOKE_PATHS)
	$(SMOKE_ENV) $(PY) -m sppnet_exp.report -m table=table2,table3,table4,table6,table7,table9,table10,table12 $(SMOKE_PATHS) \
		out_dir=$(SMOKE_DIR)/reports wandb.log=false hydra.sweep.dir=$(SMOKE_DIR)/report-jobs hydra.sweep.subdir=.
	@echo "smoke: every table's pipeline ran; the reports are $(SMOKE_DIR)/reports/<table>/results.md"

# Steps of `make smoke` (after its Table 2 step; no $(STAMP) prerequisite: the sub-make does not see `-o`).
smoke-table3:
	$(SMOKE_ENV) $(PY) -m sppnet_exp.eval experiment=table3/zf5_spp_single $(SMOKE_NET) $(SMOKE_TRAINER) $(SMOKE_PATHS)
	@# Table 4: Overfeat-7 multi-size (trained here, one batch), its 10 crops and the views pooled from its maps
	$(SMOKE_ENV) $(PY) -m sppnet_exp.eval experiment=table4/overfeat7_spp_multi $(SMOKE_NET) $(SMOKE_TRAINER) $(SMOKE_PATHS)

smoke-detect:
	$(SMOKE_ENV) $(PY) -m sppnet_exp.detect -m 'experiment=$(SMOKE_DET_CELLS)' $(SMOKE_DET) $(SMOKE_PATHS)

VERIFY := $(addprefix verify-,$(TABLES))
verify-table2: $(STAMP)  ## check a table's results against experiments/<table>/expected.yaml (verify-table3, ...)
$(VERIFY): $(STAMP)
	$(PY) -m sppnet_exp.report table=$(@:verify-%=%) verify=true $(REPORT_ARGS)

test: $(STAMP)  ## fast test suite (what CI runs)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-full: $(STAMP)  ## every test, the slow ones included
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## ruff format + fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)  ## benchmarks -> outputs/bench/*.json + summary.md
	$(PY) -m sppnet_exp.bench.run $(ARGS)

bench-publish: $(STAMP)  ## copy outputs/bench into experiments/bench/bench.json and rewrite the READMEs' bench blocks (ADD=1: merge a --only run)
	$(PY) -m sppnet_exp.bench.summary publish $(or $(RUN),outputs/bench) $(if $(ADD),--add)

bench-compare: $(STAMP)  ## two bench runs side by side: make bench-compare A=outputs/bench-1 B=outputs/bench-2
	$(PY) -m sppnet_exp.bench.summary compare $(A) $(B)

complexity: $(STAMP)  ## regenerate experiments/golden/model_complexity.json
	$(PY) -m sppnet_exp.models.complexity --write

clean:  ## remove outputs, caches and the venv
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache $(VENV)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install lock $(TABLES) smoke smoke-table3 smoke-detect $(VERIFY) test test-full lint format bench bench-publish bench-compare complexity clean
