"""Tables 6-7's transfer pieces: the views, the layer features of a net, the SVMs (single- and multi-label), the VOC07
classification AP, the feature cache, the Caltech101 split protocol and Table 6's run with its choice of s."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sppnet_exp.config import compose_config
from sppnet_exp.engine.wiring import build_datamodule
from sppnet_exp.models import build_model
from sppnet_exp.transfer.features import extract, layer_features, layers_for
from sppnet_exp.transfer.svm import choose_c, fit_ovr, l2_normalize, mean_average_precision, mean_class_accuracy
from sppnet_exp.transfer.task import FeatureCache
from sppnet_exp.transfer.views import view
from sppnet_exp.utils.average_precision import classification_ap


def _net(head: str = "spp"):
    torch.manual_seed(0)
    levels = (6, 3, 2, 1) if head == "spp" else (6,)
    return build_model("zf5", head=head, levels=levels, width=0.125, input_size=112, num_classes=5).eval()


def _image(h: int = 150, w: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def test_views_have_the_sizes_of_the_paper() -> None:
    img = _image(150, 200)
    assert view(img, "crop", 112).shape == (3, 112, 112)
    assert view(img, "full", 112).shape == (3, 112, 149)  # shorter side s, the aspect ratio kept
    assert view(img, "warp", 112).shape == (3, 112, 112)
    # the crop is the centre of the full view
    full, crop = view(img, "full", 112), view(img, "crop", 112)
    left = (full.shape[-1] - 112) // 2
    torch.testing.assert_close(crop, full[:, :, left : left + 112])
    with pytest.raises(ValueError, match="view must be one of"):
        view(img, "tile", 112)


def test_layer_features_are_the_nets_own_layers() -> None:
    net = _net("spp")
    x = torch.stack([view(_image(seed=i), "crop", 112) for i in range(3)])
    feats = layer_features(net, x, ["conv5", "pool5", "spp_pool5", "fc6", "fc7"])
    conv5 = net.features(x)
    torch.testing.assert_close(feats["conv5"], conv5.flatten(1))
    torch.testing.assert_close(feats["pool5"], F.adaptive_max_pool2d(conv5, 6).flatten(1))  # the 6x6 level
    torch.testing.assert_close(feats["spp_pool5"], net.pool(conv5))
    torch.testing.assert_close(feats["fc7"], net.forward_features(x))  # eval mode: relu(fc7), no dropout
    assert feats["spp_pool5"].shape[1] == net.pool.output_dim(net.out_channels)


def test_rows_a_net_or_view_cannot_give_are_left_out() -> None:
    spp, nospp = _net("spp"), _net("nospp")
    assert layers_for(spp, "crop") == ["conv4", "conv5", "pool5", "spp_pool5", "fc6", "fc7"]
    assert layers_for(spp, "full") == ["pool5", "spp_pool5", "fc6", "fc7"]
    assert layers_for(nospp, "crop") == ["conv4", "conv5", "pool5", "fc6", "fc7"]
    assert layers_for(nospp, "full") == []  # a fixed-input net takes no full image
    with pytest.raises(ValueError, match="unknown layer"):
        layers_for(spp, "crop", ["fc8"])


def test_full_images_of_different_sizes_give_fixed_length_features() -> None:
    net = _net("spp")
    images = [_image(120, 180, 0), _image(200, 130, 1)]
    out = extract(net, images, "full", 112, ["spp_pool5", "fc7"])
    assert out["spp_pool5"].shape == (2, net.pool.output_dim(net.out_channels)) and out["fc7"].shape[0] == 2


def test_svms_separate_a_separable_set_and_accuracy_weights_classes_equally() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 5
    y = np.repeat(np.arange(4), [30, 30, 30, 10])
    x = centres[y] + rng.normal(size=(len(y), 16)) * 0.3
    model = fit_ovr(x, y, 4, C=10.0)
    assert mean_class_accuracy(model.predict(x), y, 4) == 1.0
    # 3 of the 4 classes right, the small class wrong: 0.75 whatever its size (overall accuracy would be 0.91)
    pred = np.where(y == 3, 0, y)
    assert mean_class_accuracy(pred, y, 4) == pytest.approx(0.75)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(x), axis=1), 1.0, rtol=1e-5)
    best, scores = choose_c(x, y, 4, grid=(0.01, 10.0))
    assert best == 10.0 and scores[10.0] == 1.0 and scores[0.01] < 1.0


def test_multilabel_svms_separate_a_separable_set_and_skip_ignored_labels() -> None:
    """VOC 2007's path: one SVM per class on multi-hot targets, the -1 (difficult-only) images left out of that class's
    SVM and AP; a separable set gives mAP 1, and ignored images that the SVM ranks first change nothing."""
    rng = np.random.default_rng(1)
    k, n = 3, 120
    t = (rng.random((n, k)) < 0.4).astype(np.float32)
    t[t.sum(1) == 0, 0] = 1.0
    directions = np.eye(k, 8) * 4
    x = t @ directions + rng.normal(size=(n, 8)) * 0.2  # each present class adds its own direction
    labels = t.copy()
    flip = rng.choice(np.flatnonzero(t[:, 1] == 0), 10, replace=False)
    labels[flip, 1] = -1.0  # difficult-only images of class 1, drawn as positives: left out, never negatives
    x[flip] += directions[1]
    model = fit_ovr(x, labels, k, C=10.0)
    assert mean_average_precision(model.scores(x), labels) == pytest.approx(1.0)
    assert mean_average_precision(model.scores(x), np.where(labels < 0, 0.0, labels)) < 1.0  # as negatives: errors
    best, scores = choose_c(x, labels, k, grid=(0.001, 10.0))
    assert scores[10.0] == pytest.approx(1.0) and best in (0.001, 10.0)  # held-out folds: separable too


def test_classification_ap_is_the_devkit_11_point_ap() -> None:
    # ranked: +, -, +, ignored, -, +  -> recall/precision after each counted image: (1/3, 1), (1/3, 1/2), (2/3, 2/3),
    # (2/3, 2/3) again (the ignored image counts neither way), (2/3, 1/2), (1, 3/5); 11-point: t = 0..0.3 -> 1 (4
    # points), 0.4..0.6 -> 2/3 (3), 0.7..1 -> 3/5 (4)
    scores = np.array([0.9, 0.8, 0.7, 0.65, 0.6, 0.5])
    targets = np.array([1, 0, 1, -1, 0, 1])
    assert classification_ap(scores, targets) == pytest.approx((4 * 1 + 3 * 2 / 3 + 4 * 0.6) / 11)
    worse = np.array([0.8, 0.9, 0.7, 0.65, 0.6, 0.5])  # the first negative ranked above the first positive
    assert classification_ap(worse, targets) < classification_ap(scores, targets)
    assert np.isnan(classification_ap(scores, np.zeros(6)))  # no positive: no AP (left out of the mAP)


def test_feature_cache_computes_each_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = []
    for i in range(4):
        p = tmp_path / f"im{i}.png"
        from PIL import Image

        Image.fromarray(_image(seed=i).permute(1, 2, 0).numpy()).save(p)
        paths.append(str(p))
    import sppnet_exp.transfer.task as task

    calls: list[int] = []
    real = task.extract

    def counting(net, images, *a, **kw):  # noqa: ANN001, ANN202
        images = list(images)
        calls.append(len(images))
        return real(net, images, *a, **kw)

    monkeypatch.setattr(task, "extract", counting)
    cache, net = FeatureCache(tmp_path / "cache", "t"), _net("spp")
    first = cache.get(net, paths[:3], "crop", 112, ["fc7"])
    again = FeatureCache(tmp_path / "cache", "t").get(net, [paths[3], paths[0]], "crop", 112, ["fc7"])
    assert calls == [3, 1]  # the second split computes only its new image
    np.testing.assert_array_equal(again["fc7"][1], first["fc7"][0])


def test_a_transfer_run_uses_the_papers_split_protocol(tmp_path: Path) -> None:
    """30 training and up to 50 test images per class, the background folder left out, a split per seed."""
    splits = []
    for seed in (0, 1):
        cfg = compose_config("transfer", ["experiment=table7/b_spp_crop", f"seed={seed}", f"paths.root_dir={tmp_path}",
                                          "data.gen_train_per_class=50", "data.gen_val_per_class=35"])  # fmt: skip
        dm = build_datamodule(cfg)
        dm.setup()
        assert "BACKGROUND_Google" not in dm.class_names and len(dm.class_names) == 16
        train, test = Counter(t for _, t in dm.train_samples), Counter(t for _, t in dm.eval_samples)
        assert set(train.values()) == {30} and set(test.values()) == {50}
        assert not {p for p, _ in dm.train_samples} & {p for p, _ in dm.eval_samples}
        splits.append({p for p, _ in dm.train_samples})
    assert splits[0] != splits[1]


def test_a_wrong_data_root_is_a_preflight_problem_and_null_is_the_embedded_default(tmp_path: Path) -> None:
    from sppnet_exp.engine.preflight import check_inputs

    base = ["experiment=table7/b_spp_crop", f"paths.root_dir={tmp_path}", "pretrained.checkpoint=null"]
    wrong = check_inputs(compose_config("transfer", [*base, "data.root=/nonexistent"]), "transfer")
    assert [p.key for p in wrong if p.key == "data.root"] == ["data.root"]
    assert "101_ObjectCategories" in next(p.expected for p in wrong if p.key == "data.root")
    embedded = check_inputs(compose_config("transfer", base), "transfer")
    assert not [p for p in embedded if p.key == "data.root"]  # null: the generated set, not a missing root


def test_a_transfer_run_writes_each_layer_and_a_finished_run_is_skipped(tmp_path: Path) -> None:
    """One column and split end to end (a small generated set, a checkpoint file as the pretrained net): results.json
    holds every layer's accuracy and the chosen C, the features are cached, and the same run again is skipped."""
    import json

    from sppnet_exp.transfer.task import transfer

    net = _net("spp")
    hp = {"model": {"name": "zf5", "head": "spp", "levels": [6, 3, 2, 1], "width": 0.125, "input_size": 112},
          "num_classes": 5}  # fmt: skip
    ckpt = tmp_path / "net.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    overrides = [
        "experiment=table7/c_spp_full",
        f"paths.root_dir={tmp_path}",
        f"pretrained.checkpoint={ckpt}",
        "logger=csv",
        "progress=false",
        "data.gen_classes=3",
        "data.gen_train_per_class=8",
        "data.gen_val_per_class=4",
        "data.train_per_class=6",
        "data.test_per_class=5",
        "layers=[pool5,spp_pool5,fc7]",
        "svm.C_grid=[0.1,10.0]",
    ]
    cfg = compose_config("transfer", overrides)
    out = transfer(cfg)
    assert out["status"] == "finished" and set(out["metrics"]) == {"pool5", "spp_pool5", "fc7"}
    for m in out["metrics"].values():
        assert 0.0 <= m["acc"] <= 100.0 and m["C"] in (0.1, 10.0)
    on_disk = json.loads((Path(cfg.run_dir) / "results.json").read_text())
    assert on_disk["data"] == "generated" and on_disk["transfer"]["train_images"] == 18
    assert on_disk["transfer"]["test_images"] == 15 and on_disk["config"]["view"] == "full"
    assert len(list((tmp_path / "outputs" / "cache" / "transfer").glob("*.npz"))) == 1
    again = transfer(compose_config("transfer", overrides))
    assert again["updated"] == on_disk["updated"]  # skipped: the finished run is returned as it was


def test_a_voc07_run_chooses_s_on_held_out_training_images(tmp_path: Path) -> None:
    """Table 6 (d) end to end on a few generated VOC-layout scenes: multi-label targets, every layer's mAP, and the s
    of the grid chosen on held-out trainval images (the test images never choose it), then used for the test."""
    from sppnet_exp.transfer.task import transfer

    net = _net("spp")
    hp = {"model": {"name": "zf5", "head": "spp", "levels": [6, 3, 2, 1], "width": 0.125, "input_size": 112},
          "num_classes": 5}  # fmt: skip
    ckpt = tmp_path / "net.ckpt"
    torch.save({"hyper_parameters": hp, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    cfg = compose_config("transfer", [
        "experiment=table6/d_spp_full_best", f"paths.root_dir={tmp_path}", f"pretrained.checkpoint={ckpt}",
        "logger=csv", "progress=false", "data.gen_classes=3", "data.gen_train_per_class=8",
        "data.gen_val_per_class=5", "layers=[pool5,fc7]", "svm.C=1.0", "size_grid.factors=[1.0,1.5]",
    ])  # fmt: skip
    out = transfer(cfg)
    info = out["transfer"]
    assert out["status"] == "finished" and set(out["metrics"]) == {"pool5", "fc7"}
    assert all(0.0 <= m["mAP"] <= 100.0 for m in out["metrics"].values())
    assert info["train_images"] == 24 and info["test_images"] == 15 and info["classes"] == 3
    search = info["size_search"]
    assert set(search["scores"]) == {"112", "168"} and search["held_out"] == 7
    assert info["size"] == search["chosen"] == max((112, 168), key=lambda s: sum(search["scores"][str(s)].values()))
