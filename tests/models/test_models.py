"""Networks: Table 1 map sizes, shapes, heads, LRN, init, width scaling, analytic complexity (golden)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sppnet_exp.models import SpatialPyramidPooling, SPPNet, build_model, list_models, map_sizes, stage_sizes
from sppnet_exp.models.complexity import GOLDEN_PATH, complexity, golden_table
from sppnet_exp.models.layers import WithinChannelLRN

TABLE1 = ("zf5", "convnet5", "overfeat5", "overfeat7")
SMALL = {"width": 0.25, "num_classes": 10}


def test_registry() -> None:
    assert list_models() == ["alexnet", "convnet5", "overfeat5", "overfeat7", "zf5"]
    with pytest.raises(ValueError, match="alexnet.*zf5"):
        build_model("vgg16")
    for kwargs in ({"head": "roi"}, {"init": "xavier"}, {"width": 0}, {"pool": "sum"}):
        with pytest.raises(ValueError):
            build_model("zf5", **kwargs)


def test_table1_map_sizes() -> None:
    # Table 1 "map size" = side at the end of each conv's stage (after its LRN/pool).
    assert map_sizes("convnet5", 224) == {"conv1": 55, "conv2": 27, "conv3": 13, "conv4": 13, "conv5": 13}
    for name, depth in (("overfeat5", 5), ("overfeat7", 7)):
        want = {"conv1": 36, "conv2": 18} | {f"conv{i}": 18 for i in range(3, depth + 1)}
        assert map_sizes(name, 224) == want
    # Released ZF-5: conv1 110 -> pool1 55 (Table 1: 55); conv2 (5x5 s2 p0) 26 -> pool2 13. Table 1 prints 27
    # for the conv2 column, which no layer of the released net produces (its conv3-5 are 13 as in Table 1).
    zf5 = stage_sizes("zf5", 224)
    assert zf5 == {"conv1": 110, "pool1": 55, "conv2": 26, "pool2": 13, "conv3": 13, "conv4": 13, "conv5": 13}
    assert map_sizes("zf5", 224) == {"conv1": 55, "conv2": 13, "conv3": 13, "conv4": 13, "conv5": 13}
    assert stage_sizes("alexnet", 227)["conv5"] == 13


@pytest.mark.parametrize(
    "name,sizes",
    [
        ("zf5", {224: 13, 180: 10, 112: 6, 90: 4}),
        ("convnet5", {224: 13, 180: 10, 112: 6, 90: 4}),
        ("overfeat5", {224: 18, 180: 14, 112: 8}),
        ("overfeat7", {224: 18, 180: 14, 112: 8}),
        ("alexnet", {227: 13, 224: 13}),
    ],
)
def test_feature_map_size_matches_forward(name: str, sizes: dict[int, int]) -> None:
    model = build_model(name, **SMALL).eval()
    for size, side in sizes.items():
        assert model.feature_map_size(size, size) == (side, side)
        assert list(stage_sizes(name, size).values())[-1] == side
    with torch.no_grad():
        for h, w in ((224, 224), (180, 180), (131, 257), (97, 64)):
            assert tuple(model.features(torch.zeros(1, 3, h, w)).shape[-2:]) == model.feature_map_size(h, w)
    with pytest.raises(ValueError, match="too small"):
        model.feature_map_size(8, 8)


def test_attributes_and_layer_names() -> None:
    model = build_model("zf5")
    assert isinstance(model, SPPNet) and isinstance(model.pool, SpatialPyramidPooling)
    assert (model.name, model.head, model.levels, model.out_channels) == ("zf5", "spp", (6, 3, 2, 1), 256)
    assert list(dict(model.features.named_children())) == [
        "conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2",
        "conv3", "relu3", "conv4", "relu4", "conv5", "relu5",
    ]  # fmt: skip
    assert list(dict(model.fc.named_children())) == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7"]
    assert model.fc.fc6.in_features == 12800 and model.classifier.out_features == 1000
    assert model.fc.drop6.p == 0.5 and build_model("zf5", dropout=0.3, **SMALL).fc.drop7.p == 0.3
    strides = {name: build_model(name, **SMALL).feature_stride for name in list_models()}
    assert strides == {"alexnet": 16, "convnet5": 16, "overfeat5": 12, "overfeat7": 12, "zf5": 16}
    assert build_model("overfeat7", **SMALL).out_channels == 128
    assert list(dict(build_model("overfeat7", **SMALL).features.named_children()))[-2:] == ["conv7", "relu7"]
    assert build_model("zf5", levels=(4, 3, 2, 1)).fc.fc6.in_features == 256 * 30
    nospp = build_model("overfeat5", head="nospp", **SMALL)
    assert nospp.levels == (6,) and nospp.fc.fc6.in_features == 128 * 36 and nospp.input_size == 224


@pytest.mark.parametrize("name", TABLE1 + ("alexnet",))
def test_forward_backward_spp(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, **SMALL)
    for h, w in ((224, 224), (180, 180), (200, 150)):
        x = torch.randn(1, 3, h, w, requires_grad=True)
        out = model(x)
        assert out.shape == (1, 10) and torch.isfinite(out).all()
        out.sum().backward()
        assert model.features.conv1.weight.grad is not None and torch.isfinite(x.grad).all()
        model.zero_grad()


@pytest.mark.parametrize("name", TABLE1 + ("alexnet",))
def test_nospp_accepts_only_training_size(name: str) -> None:
    model = build_model(name, head="nospp", **SMALL).eval()
    size = model.input_size
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 10)
        with pytest.raises(ValueError, match=f"only accept {size}x{size} inputs.*head=spp"):
            model(torch.randn(1, 3, 180, 180))
    small = build_model(name, head="nospp", input_size=112, **SMALL).eval()
    assert small(torch.randn(1, 3, 112, 112)).shape == (1, 10)
    with pytest.raises(ValueError, match="112x112"):
        small(torch.randn(1, 3, 224, 224))


@pytest.mark.parametrize("name,side,pool5", [("zf5", 13, (3, 2)), ("alexnet", 13, (3, 2)), ("overfeat7", 18, (3, 3))])
def test_nospp_pool_equals_conventional_pool5(name: str, side: int, pool5: tuple[int, int]) -> None:
    model = build_model(name, head="nospp", **SMALL)
    assert model.feature_map_size(model.input_size, model.input_size) == (side, side)
    x = torch.randn(2, 8, side, side)
    want = nn.MaxPool2d(*pool5)(x)
    assert want.shape[-1] == 6
    assert torch.equal(model.pool(x), want.flatten(1))


def test_within_channel_lrn_matches_formula() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64) * 30
    lrn = WithinChannelLRN(3, alpha=5e-5, beta=0.75)
    got = lrn(x)
    want = torch.empty_like(x)
    for b in range(2):
        for c in range(3):
            for i in range(5):
                for j in range(6):
                    window = x[b, c, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
                    scale = 1 + 5e-5 / 9 * (window**2).sum()
                    want[b, c, i, j] = x[b, c, i, j] * scale**-0.75
    assert torch.allclose(got, want, rtol=1e-12, atol=0)
    y = x.clone()
    y[:, 1] *= 100  # within channel: other channels are untouched
    assert torch.equal(lrn(y)[:, [0, 2]], got[:, [0, 2]])
    assert not torch.allclose(nn.LocalResponseNorm(3, 5e-5, 0.75)(y)[:, [0, 2]], got[:, [0, 2]])
    norms = {name: type(build_model(name, **SMALL).features.norm1).__name__ for name in list_models()}
    assert norms["zf5"] == "WithinChannelLRN" and norms["convnet5"] == "Float32LRN"
    assert isinstance(build_model("convnet5", **SMALL).features.norm1, nn.LocalResponseNorm)
    assert build_model("convnet5", **SMALL).features.norm1.k == 2.0
    assert build_model("alexnet", **SMALL).features.norm1.k == 1.0


def test_width_scaling() -> None:
    full, quarter = build_model("zf5"), build_model("zf5", width=0.25)
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        a, b = getattr(full.features, layer), getattr(quarter.features, layer)
        assert b.out_channels * 4 == a.out_channels and b.out_channels % 8 == 0
        assert (a.kernel_size, a.stride, a.padding) == (b.kernel_size, b.stride, b.padding)
    assert quarter.fc.fc7.out_features == 1024 and quarter.fc.fc6.in_features == 64 * 50
    assert build_model("overfeat5", width=0.5, **{"num_classes": 10}).out_channels == 256
    assert quarter.feature_map_size(224, 224) == full.feature_map_size(224, 224)
    # The SPP head's parameters do not depend on the input size; the no-SPP head is always 6x6.
    for head in ("spp", "nospp"):
        counts = {
            sum(p.numel() for p in build_model("zf5", head=head, input_size=s, **SMALL).parameters())
            for s in (112, 224)
        }
        assert len(counts) == 1


def test_init_schemes() -> None:
    torch.manual_seed(0)
    model = build_model("zf5", width=0.5)
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert all(not m.bias.detach().any() for m in layers)
    conv2 = model.features.conv2.weight.detach()
    he_std = (2 / (conv2.shape[0] * 25)) ** 0.5  # fan_out = out_channels * 5 * 5
    assert abs(conv2.std().item() / he_std - 1) < 0.05
    assert abs(model.fc.fc6.weight.std().item() - (2 / model.fc.fc6.in_features) ** 0.5) < 2e-3
    assert abs(model.classifier.weight.std().item() - 0.01) < 1e-3
    caffe = build_model("zf5", width=0.5, init="caffe")
    biases = {n: float(m.bias.detach().mean()) for n, m in caffe.features.named_children() if isinstance(m, nn.Conv2d)}
    assert biases == {"conv1": 0.0, "conv2": 1.0, "conv3": 0.0, "conv4": 1.0, "conv5": 1.0}
    assert float(caffe.fc.fc6.bias.detach().mean()) == 1.0 and float(caffe.classifier.bias.detach().mean()) == 1.0
    assert abs(caffe.features.conv3.weight.std().item() - 0.01) < 5e-4


def hook_counts(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Measure conv/linear MACs and output elements with forward hooks on a real forward (per sample)."""
    counts = {"macs": 0, "acts": 0}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        per_sample = output[0].numel()
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            counts["macs"] += per_sample * (module.in_channels // module.groups) * kh * kw
        else:
            counts["macs"] += per_sample * module.in_features
        counts["acts"] += per_sample

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return counts


def _golden() -> list[dict]:
    return json.loads(GOLDEN_PATH.read_text())["models"]


def test_golden_file_is_current() -> None:
    assert _golden() == golden_table(), "run `python -m sppnet_exp.models.complexity --write`"
    rows = {(r["model"], r["head"], r["width"]): r for r in _golden()}
    assert rows[("alexnet", "nospp", 1.0)]["params"] == 60_965_224  # Caffe reference net
    assert rows[("zf5", "spp", 1.0)]["params"] == 77_037_672
    assert rows[("zf5", "nospp", 1.0)]["params"] == 62_357_608


def test_params_and_macs_match_models() -> None:
    for row in _golden():
        kwargs = {k: row[k] for k in ("head", "levels", "num_classes", "width", "input_size", "batch_norm")}
        size = row["input_size"]
        if row["width"] == 1.0:  # full width: build and run on the meta device (shapes only, no memory)
            with torch.device("meta"):
                model = build_model(row["model"], **kwargs)
                measured = hook_counts(model, torch.empty(1, 3, size, size))
        else:
            model = build_model(row["model"], **kwargs)
            measured = hook_counts(model, torch.randn(2, 3, size, size))
        assert sum(p.numel() for p in model.parameters()) == row["params"], row
        assert measured == {"macs": row["macs"], "acts": row["acts"]}, row


def test_real_forward_full_width_and_non_square() -> None:
    torch.manual_seed(0)
    model = build_model("overfeat7")
    measured = hook_counts(model, torch.randn(1, 3, 224, 224))
    assert measured["macs"] == complexity("overfeat7")["macs"]
    small = build_model("zf5", **SMALL)
    got = hook_counts(small, torch.randn(1, 3, 200, 150))
    want = complexity("zf5", width=0.25, num_classes=10, input_hw=(200, 150))
    assert got == {"macs": want["macs"], "acts": want["acts"]}
    with pytest.raises(ValueError, match="no-SPP"):
        complexity("zf5", head="nospp", input_hw=(180, 180))


def test_load_net_gives_the_checkpointed_net_without_the_training_module(tmp_path) -> None:
    """``models.checkpoint.load_net`` (what detection uses) rebuilds exactly the net the classifier saved: the same
    tensors (BN statistics included) and outputs as Lightning's ``load_from_checkpoint`` of the whole module."""
    import lightning
    import pytest
    import torch

    from sppnet_exp.classification.classifier import SPPClassifier
    from sppnet_exp.models.checkpoint import load_net

    model = {"name": "zf5", "head": "spp", "levels": [4, 2, 1], "width": 0.125, "input_size": 64, "batch_norm": True}
    module = SPPClassifier(model=model, num_classes=5)
    with torch.no_grad():  # non-default BN statistics, so that a missed buffer shows
        for m in module.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    net = load_net(path)
    ref = SPPClassifier.load_from_checkpoint(path, map_location="cpu").net.eval()
    assert not net.training
    for (ka, a), (kb, b) in zip(net.state_dict().items(), ref.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(a, b), ka
    x = torch.randn(2, 3, 64, 80)
    assert torch.equal(net(x), ref(x))
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="other.ckpt: not a classification checkpoint"):
        load_net(tmp_path / "other.ckpt")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_net(tmp_path / "missing.ckpt")
