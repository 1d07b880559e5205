"""Official-layout score networks against the golden outputs of the original code (../shared/reference/golden)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pds.models import OFFICIAL_CONFIGS, CondRefineNetDilated, LevelScore, NCSNpp, NCSNv2, NCSNv2Deeper
from pds.models.checkpoints import find_checkpoint, load_official

# $PDS_GOLDEN, or shared/ beside the checkout (developers and CI) or inside it
_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [Path(os.environ["PDS_GOLDEN"])] if os.environ.get("PDS_GOLDEN") else [
    _ROOT.parent / "shared" / "reference" / "golden", _ROOT / "shared" / "reference" / "golden"]
GOLDEN = next((c for c in _CANDIDATES if c.exists()), _CANDIDATES[0])
if os.environ.get("CI") and not GOLDEN.exists():  # in CI the reference must be there: never skip silently
    raise RuntimeError(f"golden reference files not found (looked in {[str(c) for c in _CANDIDATES]})")
# only the tests that read the golden files skip without them; the network tests below (float64 fast against
# reference formulation, channels-last, compiled) run on every checkout
needs_golden = pytest.mark.skipif(not GOLDEN.exists(), reason="golden reference files not found")

REFINENETS = ["ncsn_refinenet_small", "ncsnv2_small", "ncsnv2deeper_small"]
NCSNPPS = ["ncsnpp_cifar_small", "ncsnpp_highres_small"]


def golden_ncsnpp_config(name: str) -> dict:
    """The structural fields of a golden NCSN++ file's config (the rest is read from the checkpoint)."""
    model = torch.load(GOLDEN / f"{name}_io.pt", weights_only=True)["config"]["model"]
    size = torch.load(GOLDEN / f"{name}_io.pt", weights_only=True)["config"]["data"]["image_size"]
    keys = ("ch_mult", "num_res_blocks", "attn_resolutions", "progressive", "progressive_input",
            "progressive_combine", "fir_kernel", "skip_rescale", "fourier_scale")
    return {**{k: tuple(model[k]) if isinstance(model[k], list | tuple) else model[k] for k in keys},
            "image_size": size}


def per_sample_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max over samples of max|out_i − ref_i| / max|ref_i| (the README's recommended check)."""
    return float(((out - ref).abs().flatten(1).max(1).values / ref.abs().flatten(1).max(1).values).max())


def sigmas_of(io: dict, config: dict) -> torch.Tensor:
    if "used_sigmas" in io:
        return io["used_sigmas"]
    return torch.tensor(config["sigmas"], dtype=torch.float64)[io["labels"]]


@needs_golden
@pytest.mark.parametrize("name", REFINENETS)
def test_golden_outputs(name):
    io = torch.load(GOLDEN / f"{name}_io.pt", weights_only=True)
    score, config = load_official(GOLDEN / f"{name}.pth")
    with torch.no_grad():
        out = score(io["x"], sigmas_of(io, config))
    assert per_sample_error(out, io["expected"]) <= 1e-4
    if "expected_with_raw_model_weights" in io:
        assert config["ema"] is True
        # the EMA step matters: the raw-weight output is far from the expected one
        assert per_sample_error(io["expected_with_raw_model_weights"], io["expected"]) > 0.1
        raw, _ = load_official(GOLDEN / f"{name}.pth", use_ema=False)
        with torch.no_grad():
            assert per_sample_error(raw(io["x"], sigmas_of(io, config)), io["expected_with_raw_model_weights"]) <= 1e-4


@needs_golden
@pytest.mark.parametrize("name", NCSNPPS)
def test_golden_ncsnpp_outputs(name):
    io = torch.load(GOLDEN / f"{name}_io.pt", weights_only=True)
    score, config = load_official(GOLDEN / f"{name}.pth", config=golden_ncsnpp_config(name))
    assert config["arch"] == "ncsnpp" and config["ema"] is True
    with torch.no_grad():
        assert per_sample_error(score(io["x"], io["sigmas"]), io["expected"]) <= 1e-4
        raw, _ = load_official(GOLDEN / f"{name}.pth", config=golden_ncsnpp_config(name), use_ema=False)
        assert per_sample_error(raw(io["x"], io["sigmas"]), io["expected_with_raw_model_weights"]) <= 1e-4
    assert per_sample_error(io["expected_with_raw_model_weights"], io["expected"]) > 0.1


def read_keys(path: Path):
    keys, counts = [], {}
    for line in path.read_text().splitlines():
        if line.startswith("# {"):
            counts = json.loads(line[2:])
        if not line or line.startswith("#"):
            continue
        key, shape, *_ = line.split("\t")
        keys.append((key[len("module."):], tuple(json.loads(shape))))
    return keys, counts


FULL = {
    "full_ncsn_refinenet_mnist": lambda: CondRefineNetDilated(ngf=64, channels=1, num_classes=10, image_size=28),
    "full_ncsnv2_cifar10": lambda: NCSNv2(ngf=128, channels=3, sigmas=torch.ones(232), image_size=32),
    "full_ncsnv2deeper_church": lambda: NCSNv2Deeper(ngf=128, channels=3, sigmas=torch.ones(788), image_size=96),
    "full_ncsnv2deeper_tower": lambda: NCSNv2Deeper(ngf=128, channels=3, sigmas=torch.ones(1086), image_size=128),
}


NCSNPP_FULL = {
    "full_ncsnpp_cifar10_continuous": "cifar10",
    "full_ncsnpp_cifar10_deep_continuous": "cifar10_deep",
    "full_ncsnpp_bedroom_continuous": "bedroom",
    "full_ncsnpp_church_continuous": "church",
    "full_ncsnpp_ffhq_1024_continuous": "ffhq_1024",
}
FULL.update({k: (lambda v=v: NCSNpp(OFFICIAL_CONFIGS[v])) for k, v in NCSNPP_FULL.items()})


@needs_golden
@pytest.mark.parametrize("name", sorted(FULL))
def test_full_configurations_have_the_official_keys_shapes_and_counts(name):
    keys, counts = read_keys(GOLDEN / f"{name}_keys.txt")
    with torch.device("meta"):
        net = FULL[name]()
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == keys
    assert sum(p.numel() for p in net.parameters()) == counts["total_params"]
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == counts["trainable_params"]


def test_level_score_maps_sigma_to_level_and_refuses_others():
    net = NCSNv2(ngf=4, channels=1, sigmas=torch.tensor([1.0, 0.1, 0.01]))
    score = LevelScore(net, net.sigmas)
    assert score.level_index(torch.tensor([0.1, 1.0, 0.01])).tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="not one of"):
        score.level_index(torch.tensor([0.5]))
    out = score(torch.rand(2, 1, 8, 8), torch.tensor([0.1, 0.1]))
    assert out.shape == (2, 1, 8, 8)


@needs_golden
def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_official(tmp_path / "missing.pth")
    (tmp_path / "corrupt.pth").write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_official(tmp_path / "corrupt.pth")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="unknown checkpoint layout"):
        load_official(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="holds a ncsnv2 checkpoint, not ncsn"):
        load_official(GOLDEN / "ncsnv2_small.pth", arch="ncsn")
    with pytest.raises(ValueError, match="matches none of the official"):
        load_official(GOLDEN / "ncsnpp_cifar_small.pth")  # a small, non-official configuration
    ck = torch.load(GOLDEN / "ncsnpp_cifar_small.pth", weights_only=True)
    ck["ema"]["shadow_params"] = ck["ema"]["shadow_params"][:-1]
    torch.save(ck, tmp_path / "short_ema.pth")
    with pytest.raises(ValueError, match="shadow_params"):
        load_official(tmp_path / "short_ema.pth", config=golden_ncsnpp_config("ncsnpp_cifar_small"))
    # a state dict with a layer missing: the error names it
    ckpt = torch.load(GOLDEN / "ncsnv2_small.pth", weights_only=True)
    del ckpt[0]["module.end_conv.bias"]
    torch.save(ckpt, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="end_conv.bias"):
        load_official(tmp_path / "broken.pth")


def test_ncsnpp_official_configuration_is_inferred(tmp_path):
    """A checkpoint in the CIFAR-10 layout (random weights) loads without naming its configuration."""
    torch.manual_seed(0)
    net = NCSNpp(OFFICIAL_CONFIGS["cifar10"])
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    shadow = [p.detach().clone() + 0.01 for p in net.parameters() if p.requires_grad]
    torch.save({"model": state, "ema": {"decay": 0.999, "num_updates": 1, "shadow_params": shadow},
                "optimizer": {}, "step": 1}, tmp_path / "cifar.pth")
    score, config = load_official(tmp_path / "cifar.pth")
    assert config["matched"] == "cifar10" and config["sigma_max"] == pytest.approx(50.0)
    i = next(k for k, p in enumerate(net.parameters()) if p.requires_grad)  # the first parameter the EMA covers
    torch.testing.assert_close(list(score.parameters())[i], shadow[0])
    assert not score.training and not any(p.requires_grad for p in score.parameters())  # inference mode


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bedroom", "ffhq_1024"])
def test_full_resolution_forward_on_cpu(name):
    """One forward pass of the full 256² and 1024² configurations at batch 1 (random weights)."""
    torch.manual_seed(0)
    cfg = OFFICIAL_CONFIGS[name]
    net = NCSNpp(cfg).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, cfg.image_size, cfg.image_size), torch.tensor([cfg.sigma_max / 10]))
    assert out.shape == (1, 3, cfg.image_size, cfg.image_size) and bool(torch.isfinite(out).all())


def test_find_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="put the .pth file there"):
        find_checkpoint("ncsnpp_cifar10", root=tmp_path)
    (tmp_path / "ncsnpp_cifar10").mkdir()
    (tmp_path / "ncsnpp_cifar10" / "checkpoint_8.pth").write_bytes(b"x")
    assert find_checkpoint("ncsnpp_cifar10", root=tmp_path).name == "checkpoint_8.pth"


def test_diffusers_directory(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"),
        time_embedding_type="fourier", norm_num_groups=32, attention_head_dim=8,
    ).eval()
    unet.save_pretrained(tmp_path / "ncsnpp")
    score, config = load_official(tmp_path / "ncsnpp")
    assert config["arch"] == "ncsnpp-diffusers"
    x, sigma = torch.rand(2, 3, 16, 16), torch.tensor([0.5, 20.0])
    with torch.no_grad():
        torch.testing.assert_close(score(x, sigma), unet(x, sigma).sample)
        out_scalar = score(x, 20.0)  # a number is broadcast as a float σ, not cast to an integer step
        torch.testing.assert_close(out_scalar, unet(x, torch.tensor([20.0, 20.0])).sample)
    plain = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                  block_out_channels=(8, 8), down_block_types=("DownBlock2D", "DownBlock2D"),
                                  up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    plain.save_pretrained(tmp_path / "ddpm")
    with pytest.raises(ValueError, match="Fourier"):
        load_official(tmp_path / "ddpm")


# -- the fast NCSN++ formulations against score_sde's (issue 11) --------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 16, 12), (3, 1, 4, 4)])
def test_polyphase_fir_equals_zero_insertion_in_float64(shape):
    from pds.models.ncsnpp import (
        _fir_kernel,
        fir_downsample,
        fir_downsample_reference,
        fir_filter,
        fir_upsample,
        fir_upsample_reference,
        upfirdn2d,
    )

    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    k = (1, 3, 3, 1)
    up, up_ref = fir_upsample(x, k), fir_upsample_reference(x, k)
    assert up.shape == up_ref.shape == (*shape[:2], 2 * shape[2], 2 * shape[3])
    torch.testing.assert_close(up, up_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(fir_downsample(x, k), fir_downsample_reference(x, k), rtol=0, atol=1e-12)
    torch.testing.assert_close(fir_filter(x, k, 2), upfirdn2d(x, _fir_kernel(k), pad=(2, 2)), rtol=0, atol=1e-12)
    with pytest.raises(NotImplementedError, match="even taps"):
        fir_upsample(x, (1, 2, 1))


SMALL_PP = [
    dict(nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(4,), image_size=16, channels=3,
         progressive="none", progressive_input="residual"),
    dict(nf=8, ch_mult=(1, 1, 2, 2), num_res_blocks=2, attn_resolutions=(4,), image_size=32, channels=3,
         progressive="output_skip", progressive_input="input_skip"),
]


@pytest.mark.parametrize("cfg", SMALL_PP, ids=["cifar-like", "highres-like"])
def test_fast_ncsnpp_equals_the_reference_formulation_in_float64(cfg):
    torch.manual_seed(0)
    net = NCSNpp(**cfg, num_scales=10, sigma_min=0.01, sigma_max=50.0).double().eval()
    for p in net.parameters():  # zero-initialised layers would hide differences
        p.data.normal_(0, 0.2, generator=torch.Generator().manual_seed(p.numel()))
    x = torch.rand(2, 3, cfg["image_size"], cfg["image_size"], dtype=torch.float64)
    with torch.no_grad():
        fast = net(x, torch.tensor([0.3, 7.0], dtype=torch.float64))
        ref = net.use_reference_ops()(x, torch.tensor([0.3, 7.0], dtype=torch.float64))
        net.use_reference_ops(False)
    assert any(m.reference is False for m in net.modules() if hasattr(m, "reference"))
    assert float((fast - ref).abs().max() / ref.abs().max()) < 1e-12


def test_channels_last_and_float_sigma_give_the_same_scores():
    torch.manual_seed(0)
    net = NCSNpp(**SMALL_PP[1], num_scales=10, sigma_min=0.01, sigma_max=50.0).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a = net(x, torch.tensor([2.0, 2.0]))
        b = net(x, 2.0)
        c = net.to(memory_format=torch.channels_last)(x, 2.0)
    assert torch.equal(a, b)
    torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compiled_ncsnpp_matches_eager_and_compiles_once_for_many_sigmas():
    """torch.compile traces the network once for every σ (no graph break, no recompilation per noise level) and the
    traced graph computes what the eager network does. Traced with the ``aot_eager`` backend: what this checks is
    the tracing (Dynamo and AOTAutograd); inductor's C++ code generation would add 25 s of compiler time on this
    CPU and is exercised on the GPU by benchmarks/ncsnpp_speed.py --compile (benchmarks/gpu_session.sh)."""
    import torch._dynamo.utils

    torch.manual_seed(0)
    net = NCSNpp(**SMALL_PP[0], num_scales=10, sigma_min=0.01, sigma_max=50.0).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        eager = [net(x, s) for s in (0.5, 3.0, 20.0)]
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        net.compile(backend="aot_eager")
        compiled = [net(x, s) for s in (0.5, 3.0, 20.0)]
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
