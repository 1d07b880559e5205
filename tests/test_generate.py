"""pds sample / pds fid: per-sample seeds, shards, resumption, torchrun with 2 CPU processes (gloo), bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pds.cli import main
from pds.lab.cache import SAMPLE_FRACTION, SAMPLE_LEVELS
from pds.lab.generate import load_samples, sample_seed, shard_indices

BASE = ["sample", "--checkpoint", "ncsnpp_fashion32", "--method", "pds", "--radius", "0.2", "--lam", "1.6", "--T",
        "4", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}




def shards(folder):
    return {p.name: np.load(p)["images"] for p in sorted(folder.glob("shard_*.npz"))}


def test_sample_seeds_and_shards():
    assert len({sample_seed(0, i) for i in range(1000)} | {sample_seed(1, i) for i in range(1000)}) == 2000
    assert [list(r) for r in shard_indices(7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]


def agree_to_rounding(a, b) -> bool:
    """The promise of pds sample: the same images to float rounding (pds.lab.cache's tolerances for a recomputation)."""
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return a.shape == b.shape and diff.max() <= SAMPLE_LEVELS and (diff > 0).mean() <= SAMPLE_FRACTION


def test_one_process_and_two_torchrun_processes_give_the_same_shards(tmp_path, port):
    args = [*BASE, "--count", "6", "--batch", "2", "--shard-size", "2"]
    assert main([*args, "--out", str(tmp_path / "one"), "--grid", str(tmp_path / "grid.png")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           "-m", "pds", *args, "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = shards(tmp_path / "one"), shards(tmp_path / "two")
    assert list(one) == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"] and list(one) == list(two)
    assert all(agree_to_rounding(one[k], two[k]) for k in one)
    images, manifest = load_samples(tmp_path / "two")
    assert images.shape == (6, 1, 28, 28) and manifest["nfe"] == 8 and (tmp_path / "grid.png").is_file()
    # the batch size changes samples only by float rounding (per-sample seeds and corrector steps)
    assert main([*BASE, "--count", "6", "--batch", "6", "--shard-size", "2", "--out", str(tmp_path / "b6")]) == 0
    b6, _ = load_samples(tmp_path / "b6")
    assert agree_to_rounding((b6.numpy() * 255).round(), (images.numpy() * 255).round())
    assert main(["fid", "--samples", str(tmp_path / "two"), "--ref-data", "fashion-mnist"]) == 0


def test_a_killed_run_completes_on_rerun_with_nothing_lost_or_duplicated(tmp_path):
    out = tmp_path / "run"
    args = [*BASE, "--count", "10", "--batch", "1", "--shard-size", "1", "--T", "30", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "pds", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(list(out.glob("shard_*.npz"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list(out.glob("shard_0*.npz")))
    assert 2 <= partial < 10
    with pytest.raises(ValueError, match="samples missing"):
        load_samples(out)
    assert main(args) == 0
    assert main([*args[:-1], str(tmp_path / "straight")]) == 0
    a, _ = load_samples(out)
    b, _ = load_samples(tmp_path / "straight")
    assert torch.equal(a, b) and not list(out.glob("*.tmp.npz"))


@pytest.mark.parametrize(
    "args, match",
    [
        (["--method", "vanilla", "--radius", "0.2"], "--method vanilla takes no filter"),
        (["--method", "pds"], "needs --filters"),
        (["--method", "pds", "--filters", "nope.npz"], "does not exist"),
        (["--method", "pds", "--filters", "x.npz", "--radius", "0.2", "--lam", "1.6"], "not both"),
        (["--method", "vanilla", "--count", "0"], "--count must be >= 1"),
        (["--method", "vanilla", "--T", "0"], "--T must be >= 1"),
        (["--method", "vanilla", "--checkpoint", "no_such_model"], "unknown checkpoint 'no_such_model'"),
        (["--method", "vanilla", "--config", "imagenet"], "unknown experiment 'imagenet'"),
        (["--method", "pds", "--radius", "0.2", "--lam", "-1"], "lam must be a finite number > 0"),
        (["--method", "pds", "--radius", "0.2", "--lam", "1.6", "--sampler", "heun"], "heun is deterministic"),
        (["--method", "vanilla", "--checkpoint", "ncsn_fashion28", "--sampler", "pc_kept"],
         "pc_kept is a VE predictor-corrector sampler for NCSN++"),
    ],
)
def test_sample_refuses_bad_arguments(args, match, tmp_path, capsys):
    (tmp_path / "x.npz").write_bytes(b"")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        full = ["sample", "--checkpoint", "ncsnpp_fashion32", "--T", "2", "--count", "2", "--out", "o", "--quiet"]
        merged = full + args
        code = main(merged)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2 and match in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()  # nothing written, not even the run's settings


@pytest.mark.parametrize("name, method", [("heun", []), ("edm_churn", ["--radius", "0.2", "--lam", "1.6"])])
def test_sample_draws_with_a_registered_sampler_as_the_library_does(name, method, tmp_path):
    """``--sampler`` takes any sampler of pds.samplers.SAMPLERS that applies to the model; the shards equal
    pds.lab.experiments.draw with that Method, sample by sample (per-sample seeds)."""
    from pds.lab.experiments import Method, SmallModel, crop_and_clip, draw

    out = tmp_path / name
    args = ["sample", "--checkpoint", "ncsnpp_fashion32", "--method", "pds" if method else "vanilla", *method,
            "--sampler", name, "--T", "3", "--count", "2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    got, meta = load_samples(out)
    model = SmallModel("ncsnpp_fashion32")
    m = Method("parametric", r=0.2, lam=1.6, sampler=name) if method else Method(sampler=name)
    gens = [torch.Generator().manual_seed(sample_seed(0, i)) for i in range(2)]
    x, nfe = draw(model, model.preconditioner(m), m, 3, (2, *model.shape), gens, "cpu", corrector="sample")
    assert nfe == meta["nfe"] == 5  # Heun's 2 evaluations per step, the last step Euler's one: 2T - 1
    want = (crop_and_clip(x, model.pad) * 255).round()
    assert (got.double() * 255 - want.double()).abs().max() <= 1


def test_a_folder_refuses_another_run_and_fid_errors_are_clear(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "r")
    assert main(["sample", "--checkpoint", "ncsnpp_fashion32", "--method", "vanilla", "--T", "2", "--count", "2",
                 "--out", out, "--quiet"]) == 0
    assert main(["sample", "--checkpoint", "ncsnpp_fashion32", "--method", "vanilla", "--T", "3", "--count", "2",
                 "--out", out, "--quiet"]) == 2
    assert "already holds another run (differs in ['T'])" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torch_home"))
    assert main(["fid", "--samples", out, "--ref-data", "fashion-mnist", "--metric", "fid"]) == 2
    err = capsys.readouterr().err
    assert "Inception weights" in err and "no download" in err
    assert not (tmp_path / "no_torch_home" / "hub").exists()  # nothing was fetched or created
    assert main(["fid", "--samples", str(tmp_path), "--ref-data", "fashion-mnist"]) == 2
    assert "not a pds sample run" in capsys.readouterr().err


def test_sample_takes_an_optimised_filter_as_given(tmp_path, capsys):
    """A filter from pds.exact.optimal is used as given (``--alpha none``): R = p^(-1/2), no released normalisation."""
    from pds.exact.optimal import RadialFilter
    from pds.filters import save_filters

    filt = RadialFilter(torch.linspace(0.5, -0.3, 6, dtype=torch.float64), 22.7)
    path = save_filters(tmp_path / "opt.npz", filt.frequency_filter((1, 32, 32)), source="test")
    args = ["sample", "--checkpoint", "ncsnpp_fashion32", "--method", "pds", "--filters", str(path), "--T", "2",
            "--count", "2", "--quiet"]
    assert main([*args, "--alpha", "none", "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # default α = 5: a different preconditioner
    a, _ = load_samples(tmp_path / "a")
    b, _ = load_samples(tmp_path / "b")
    assert a.shape == b.shape and not torch.equal(a, b)
    with pytest.raises(SystemExit):
        main([*args, "--alpha", "bogus", "--out", str(tmp_path / "c")])
    assert "--alpha must be a number > 1 or 'none'" in capsys.readouterr().err
