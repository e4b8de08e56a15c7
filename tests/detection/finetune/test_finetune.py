"""fc6/fc7 heads and fine-tuning on cached pool5 features: sampling, batches, schedule, learning, init."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.finetune.batches import FineTuneWindows
from sppnet_exp.detection.finetune.fc import AUTHORS_SCHEDULE, PAPER_SCHEDULE, FCFineTuner, fit_finetuner, lr_at
from sppnet_exp.detection.finetune.sampling import WindowSampler
from sppnet_exp.detection.structures.roidb import build_windows
from sppnet_exp.models import build_model

NUM_CLASSES = 3
IN_DIM = 1600  # zf5 at width 0.125: 64 channels x 25 bins


def _record(i: int, gt: np.ndarray, labels: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(
        image_id=f"im{i}", width=300, height=300, boxes=gt, labels=labels, difficult=np.zeros(len(gt), bool)
    )


def scene(n_img: int, seed: int = 0, dim: int = IN_DIM):
    """GT + jittered + random proposals; fp16 post-ReLU features: noise plus the best class's direction, strong (3)
    for foreground windows (IoU >= 0.5) and weak (IoU / 2) below."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(0, 1, (NUM_CLASSES, dim))
    roidb, pooled = [], []
    for i in range(n_img):
        n_gt = int(rng.integers(1, 3))
        xy = rng.uniform(1, 150, (n_gt, 2))
        gt = np.concatenate([xy, xy + rng.uniform(40, 120, (n_gt, 2))], axis=1).astype(np.float32)
        jit = gt[rng.integers(0, n_gt, 40)] + rng.normal(0, 15, (40, 4))
        rxy = rng.uniform(1, 250, (40, 2))
        props = np.concatenate([jit, np.concatenate([rxy, rxy + rng.uniform(10, 60, (40, 2))], axis=1)])
        props[:, 2:] = np.maximum(props[:, 2:], props[:, :2] + 2)
        w = build_windows(_record(i, gt, rng.integers(0, NUM_CLASSES, n_gt)), props.astype(np.float32), NUM_CLASSES)
        f = rng.normal(0, 1, (len(w), dim))
        has = w.max_classes > 0
        mo = w.max_overlaps[has, None]
        f[has] += np.where(mo >= 0.5, 3.0, mo / 2) * directions[w.max_classes[has] - 1]
        roidb.append(w)
        pooled.append(np.maximum(f, 0).astype(np.float16))  # pool5 is post-ReLU
    return roidb, pooled


def test_batch_composition_and_labels() -> None:
    roidb, _ = scene(10)
    sampler = WindowSampler(roidb, seed=1)
    assert sampler.num_fg > 64 and sampler.num_bg > 96
    assert sampler.composition() == (32, 96)
    seen_fg = []
    for _ in range(sampler.num_fg // 32):
        img, row, lab = sampler.sample()
        assert len(img) == 128 and (lab[:32] > 0).all() and (lab[32:] == 0).all()
        for i, r, y in zip(img, row, lab):
            mo = roidb[i].max_overlaps[r]
            if y > 0:
                assert mo >= 0.5 and y == roidb[i].max_classes[r]
            else:
                assert 0.1 <= mo < 0.5
        seen_fg += [(i, r) for i, r in zip(img[:32], row[:32])]
    assert len(set(seen_fg)) == len(seen_fg)  # one permutation cycle: no repeats
    # the GT rows are foreground windows too
    gt_keys = {(i, r) for i, w in enumerate(roidb) for r in np.flatnonzero(w.is_gt)}
    assert gt_keys <= set(zip(sampler.fg_img.tolist(), sampler.fg_row.tolist()))


def test_few_foreground_fill_with_background() -> None:
    gt = np.array([[50, 50, 150, 150]], dtype=np.float32)
    near = gt + np.arange(1, 10)[:, None] * np.array([2, 2, 2, 2], np.float32)  # 9 proposals with IoU >= 0.5
    far = np.array([[50, 50, 150, 150]], np.float32) + np.array([60, 0, 60, 0], np.float32)  # IoU 0.25
    props = np.concatenate([near, np.repeat(far, 200, axis=0)])
    w = build_windows(_record(0, gt, np.array([1])), props, NUM_CLASSES)
    sampler = WindowSampler([w], seed=0)
    assert sampler.num_fg == 10 and sampler.composition() == (10, 118)
    img, row, lab = sampler.sample()
    assert (lab == 2).sum() == 10 and len(set(row[:10].tolist())) == 10 and (lab[10:] == 0).all()
    only_fg = WindowSampler([w], bg_thresh=(0.0, 0.0), seed=0)
    assert only_fg.composition() == (128, 0)
    assert (only_fg.sample()[2] == 2).all()
    with pytest.raises(ValueError, match="no foreground or background"):
        WindowSampler([w], fg_thresh=1.1, bg_thresh=(0.0, 0.0))


def test_dataset_reads_the_sampled_rows() -> None:
    roidb, pooled = scene(4)
    reads: list[int] = []

    def getter(i: int) -> np.ndarray:
        reads.append(i)
        return pooled[i]

    ds = FineTuneWindows(roidb, getter, WindowSampler(roidb, batch_size=64, seed=0), steps=3, seed=7)
    batches = list(ds)
    assert len(batches) == 3
    ref = WindowSampler(roidb, batch_size=64, seed=7)
    for x, y in batches:
        img, row, lab = ref.sample()
        assert x.dtype == torch.float32 and x.shape == (64, IN_DIM) and y.dtype == torch.int64
        np.testing.assert_array_equal(y.numpy(), lab)
        expected = np.stack([pooled[i][r] for i, r in zip(img, row)]).astype(np.float32)
        np.testing.assert_array_equal(x.numpy(), expected)
    assert len(reads) <= 3 * 4  # each image read at most once per batch
    again = [y for _, y in FineTuneWindows(roidb, getter, WindowSampler(roidb, batch_size=64), steps=3, seed=7)]
    assert all(torch.equal(a, b[1]) for a, b in zip(again, batches))


def test_head_layers_match_sppnet_fc() -> None:
    net = build_model("zf5", width=0.125).eval()
    head = FCHead.from_fc(net.fc)
    x = torch.relu(torch.randn(37, IN_DIM))
    with torch.no_grad():
        fc6 = torch.relu(net.fc.fc6(x))
        np.testing.assert_allclose(head.layer_features(x, "fc7", batch_size=8), net.fc(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head.layer_features(x, "fc6"), fc6, rtol=1e-5, atol=1e-6)
    assert torch.equal(head.layer_features(x, "pool5"), x)
    x16 = x.numpy().astype(np.float16)
    out = head.layer_fn("fc7")(x16)
    assert out.dtype == torch.float32 and out.shape == (37, 512)
    assert head.layer_features(x[:0], "fc7").shape == (0, 512)
    # a copy: training the source net does not change the head
    with torch.no_grad():
        net.fc.fc6.weight.add_(1.0)
    assert not torch.equal(head.fc6.weight, net.fc.fc6.weight)
    same = FCHead.from_fc({k: v for k, v in net.fc.state_dict().items()})
    assert torch.equal(same.fc6.weight, net.fc.fc6.weight)
    with pytest.raises(ValueError, match="layer"):
        head.layer_features(x, "fc8")


def test_tuner_init_from_sppnet_fc() -> None:
    net = build_model("zf5", width=0.125)
    tuner = FCFineTuner(IN_DIM, 512, NUM_CLASSES, init_fc=net.fc)
    for name in ("fc6", "fc7"):
        assert torch.equal(getattr(tuner.fc, name).weight, getattr(net.fc, name).weight)
        assert torch.equal(getattr(tuner.fc, name).bias, getattr(net.fc, name).bias)
    assert tuner.fc8.out_features == NUM_CLASSES + 1
    assert tuner.fc8.weight.std().item() == pytest.approx(0.01, rel=0.1) and (tuner.fc8.bias == 0).all()
    head = tuner.finetuned_head()
    assert torch.equal(head.fc7.weight, net.fc.fc7.weight)
    from_state = FCFineTuner(IN_DIM, 512, NUM_CLASSES, init_fc=net.fc.state_dict())
    assert torch.equal(from_state.fc.fc6.weight, net.fc.fc6.weight)
    with pytest.raises(ValueError, match="fc6 weight"):
        FCFineTuner(IN_DIM + 1, 512, NUM_CLASSES, init_fc=net.fc)


def test_lr_schedules() -> None:
    assert lr_at(0, PAPER_SCHEDULE) == 1e-4 and lr_at(249_999, PAPER_SCHEDULE) == 1e-4
    assert lr_at(250_000, PAPER_SCHEDULE) == 1e-5
    assert [lr_at(s, AUTHORS_SCHEDULE) for s in (0, 29_999, 30_000, 60_000, 10**6)] == [1e-3, 1e-3, 1e-4, 1e-5, 1e-5]
    with pytest.raises(ValueError, match="iteration 0"):
        FCFineTuner(8, 8, 2, lr_steps=[(5, 0.1)])


class _Recorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.lrs: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


CPU = {"accelerator": "cpu", "devices": 1}


def test_step_schedule_and_caffe_bias_in_trainer() -> None:
    roidb, pooled = scene(3)
    rec = _Recorder()
    cfg = {"lr_steps": [[0, 0.1], [3, 0.01]], "steps": 5, "batch_size": 16, "caffe_bias": True}
    fit_finetuner(roidb, lambda i: pooled[i], None, NUM_CLASSES, cfg, {**CPU, "callbacks": [rec]})
    assert [lrs[0] for lrs in rec.lrs] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01])
    assert rec.lrs[0] == pytest.approx([0.1, 0.2, 0.2]) and rec.lrs[-1] == pytest.approx([0.01, 0.02, 0.02])
    with pytest.raises(ValueError, match="unknown keys"):
        fit_finetuner(roidb, lambda i: pooled[i], None, NUM_CLASSES, {"lr_step": 3}, CPU)
    with pytest.raises(ValueError, match="disagree"):
        fit_finetuner(roidb, lambda i: pooled[i], None, NUM_CLASSES, {"steps": 3, "max_steps": 4}, CPU)


def test_loss_decreases_on_separable_features() -> None:
    roidb, pooled = scene(12)
    net = build_model("zf5", width=0.125)
    rec = _Recorder()
    cfg = {"lr_steps": [(0, 0.01)], "max_steps": 40, "val_fraction": 0.25, "val_every": 20, "val_batches": 4}
    tuner = fit_finetuner(roidb, lambda i: pooled[i], net.fc, NUM_CLASSES, cfg, {**CPU, "callbacks": [rec]})
    assert len(rec.losses) == 40
    assert np.mean(rec.losses[-5:]) < 0.6 * np.mean(rec.losses[:5])
    metrics = tuner.trainer.callback_metrics
    assert "val/loss" in metrics and metrics["val/acc"] > 0.95  # held-out images
    # the tuned head moved away from the initial fc6; head + fc8 in eval mode (no dropout) reproduce the fit
    assert not torch.equal(tuner.fc.fc6.weight.cpu(), net.fc.fc6.weight)
    test_roidb, test_pooled = scene(3, seed=0)
    sampler = WindowSampler(test_roidb, seed=3)
    img, row, lab = sampler.sample()
    x = torch.from_numpy(np.stack([test_pooled[i][r] for i, r in zip(img, row)]).astype(np.float32))
    head = tuner.finetuned_head()
    with torch.no_grad():
        logits = tuner.fc8.cpu()(head(x))
    assert F.cross_entropy(logits, torch.from_numpy(lab)).item() < 0.6 * np.mean(rec.losses[:5])


def test_killed_fine_tuning_resumes_from_its_last_checkpoint(tmp_path) -> None:  # noqa: ANN001
    roidb, pooled = scene(6)
    cfg = {"max_steps": 6, "batch_size": 16, "lr": 0.01}
    first = fit_finetuner(roidb, lambda i: pooled[i], None, NUM_CLASSES, cfg, CPU, ckpt_dir=tmp_path)
    saved = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 6
    # A re-run finds last.ckpt at the final step: nothing is retrained, the weights are the checkpoint's.
    again = fit_finetuner(roidb, lambda i: pooled[i], None, NUM_CLASSES, {**cfg, "seed": 5}, CPU, ckpt_dir=tmp_path)
    assert again.trainer.global_step == 6
    for k, v in again.state_dict().items():
        assert torch.equal(v, saved["state_dict"][k]), k
    assert torch.equal(again.fc8.weight, first.fc8.weight)
