"""Official-layout score networks against the golden outputs of the original code (../shared/reference/golden)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pds.models import CondRefineNetDilated, LevelScore, NCSNv2, NCSNv2Deeper, load_official

# ../shared/ beside the checkout (as for developers and CI), or $PDS_GOLDEN
GOLDEN = Path(os.environ.get("PDS_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "reference" / "golden"))
pytestmark = pytest.mark.skipif(not GOLDEN.exists(), reason="golden reference files not found")

REFINENETS = ["ncsn_refinenet_small", "ncsnv2_small", "ncsnv2deeper_small"]


def per_sample_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max over samples of max|out_i − ref_i| / max|ref_i| (the README's recommended check)."""
    return float(((out - ref).abs().flatten(1).max(1).values / ref.abs().flatten(1).max(1).values).max())


def sigmas_of(io: dict, config: dict) -> torch.Tensor:
    if "used_sigmas" in io:
        return io["used_sigmas"]
    return torch.tensor(config["sigmas"], dtype=torch.float64)[io["labels"]]


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


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_configurations_have_the_official_keys_shapes_and_counts(name):
    keys, counts = read_keys(GOLDEN / f"{name}_keys.txt")
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


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_official(tmp_path / "missing.pth")
    (tmp_path / "corrupt.pth").write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_official(tmp_path / "corrupt.pth")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="unknown checkpoint layout"):
        load_official(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="holds a ncsnv2 checkpoint, not ncsn"):
        load_official(GOLDEN / "ncsnv2_small.pth", arch="ncsn")
    with pytest.raises(NotImplementedError, match="NCSN\\+\\+"):
        load_official(GOLDEN / "ncsnpp_cifar_small.pth")
    # a state dict with a layer missing: the error names it
    ckpt = torch.load(GOLDEN / "ncsnv2_small.pth", weights_only=True)
    del ckpt[0]["module.end_conv.bias"]
    torch.save(ckpt, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="end_conv.bias"):
        load_official(tmp_path / "broken.pth")
