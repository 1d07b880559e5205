"""Denoising score matching: closed-form loss values, exact resumption, official layouts."""

from __future__ import annotations

import pytest
import torch

from pds.models import CondRefineNetDilated, NCSNpp, NCSNv2
from pds.models.checkpoints import load_official
from pds.models.train import TrainConfig, dsm_loss, train

TINY_PP = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), image_size=8, channels=1,
               num_scales=10, sigma_min=0.01, sigma_max=1.0)
SIGMAS = torch.tensor([1.0, 0.3, 0.1, 0.03, 0.01])


def tiny(kind):
    torch.manual_seed(0)
    if kind == "ncsnpp":
        return NCSNpp(**TINY_PP)
    if kind == "ncsnv2":
        return NCSNv2(ngf=4, channels=1, sigmas=SIGMAS, image_size=8)
    return CondRefineNetDilated(ngf=4, channels=1, num_classes=len(SIGMAS), image_size=8)


def test_dsm_loss_closed_forms():
    x0 = torch.rand(1, 1, 8, 8)
    data = x0.expand(16, 1, 8, 8)

    def exact(x, sigma):  # the score of a point mass at x0 blurred by σ
        return -(x - x0) / sigma.view(-1, 1, 1, 1) ** 2

    g = torch.Generator().manual_seed(0)
    assert float(dsm_loss(exact, "ncsnpp", data, g, sigma_min=0.01, sigma_max=1.0)) == pytest.approx(0, abs=1e-6)
    zero = lambda x, c: torch.zeros_like(x)  # noqa: E731
    losses = [float(dsm_loss(zero, "ncsn", torch.rand(256, 1, 8, 8), torch.Generator().manual_seed(i), SIGMAS))
              for i in range(4)]
    assert sum(losses) / 4 == pytest.approx(0.5 * 64, rel=0.05)  # ½ E‖z‖² = d/2


@pytest.mark.parametrize("kind", ["ncsn", "ncsnv2", "ncsnpp"])
def test_resume_continues_exactly(kind, tmp_path):
    images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    sig = None if kind == "ncsnpp" else SIGMAS
    cfg = dict(kind=kind, batch_size=8, seed=3, save_every=2)
    straight = train(tiny(kind), images, TrainConfig(steps=4, **cfg), tmp_path / "a.pth", sigmas=sig)
    train(tiny(kind), images, TrainConfig(steps=2, **cfg), tmp_path / "b.pth", sigmas=sig)  # "killed" after 2
    resumed = train(tiny(kind), images, TrainConfig(steps=4, **cfg), tmp_path / "b.pth", sigmas=sig)
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob("*.tmp"))
    a, b = torch.load(tmp_path / "a.pth", weights_only=True), torch.load(tmp_path / "b.pth", weights_only=True)
    ema_a = a["ema"]["shadow_params"] if kind == "ncsnpp" else list(a[-1].values())
    ema_b = b["ema"]["shadow_params"] if kind == "ncsnpp" else list(b[-1].values())
    assert all(torch.equal(x, y) for x, y in zip(ema_a, ema_b, strict=True))


@pytest.mark.parametrize("kind", ["ncsn", "ncsnv2", "ncsnpp"])
def test_trained_checkpoints_load_with_the_official_loader(kind, tmp_path):
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    sig = None if kind == "ncsnpp" else SIGMAS
    net = train(tiny(kind), images, TrainConfig(kind=kind, steps=3, batch_size=4, ema_rate=0.5), tmp_path / "c.pth",
                sigmas=sig)
    config = {k: v for k, v in TINY_PP.items() if k not in ("num_scales", "sigma_min", "sigma_max")}
    score, info = load_official(tmp_path / "c.pth", config=config if kind == "ncsnpp" else None,
                                sigmas=SIGMAS if kind == "ncsn" else None)
    assert info["arch"] == kind
    x, sigma = torch.rand(2, 1, 8, 8), torch.tensor([0.1, 0.1])
    ckpt = torch.load(tmp_path / "c.pth", weights_only=True)
    expected_net = tiny(kind)
    expected_net.load_state_dict({k[len("module."):]: v for k, v in
                                  (ckpt["model"] if kind == "ncsnpp" else ckpt[0]).items()})
    if kind == "ncsnv2":  # the official sampler applies the EMA shadow
        with torch.no_grad():
            for n, p in expected_net.named_parameters():
                p.copy_(ckpt[-1][n])
    if kind == "ncsnpp":
        with torch.no_grad():
            trainable = [p for p in expected_net.parameters() if p.requires_grad]
            for p, s in zip(trainable, ckpt["ema"]["shadow_params"], strict=True):
                p.copy_(s)
    expected_net.eval()
    with torch.no_grad():
        arg = sigma if kind == "ncsnpp" else torch.tensor([2, 2])
        torch.testing.assert_close(score(x, sigma), expected_net(x, arg))
    assert any(not torch.equal(a, b) for a, b in zip(net.parameters(), tiny(kind).parameters(), strict=True))


def test_cli_train_and_resume(tmp_path):
    from pds.cli import main

    args = ["train", "--kind", "ncsn", "--data", "natural-crops", "--size", "16", "--n", "20", "--width", "4",
            "--levels", "4", "--batch-size", "4", "--save-every", "2", "--quiet", "--out", str(tmp_path / "m.pth")]
    assert main(args + ["--steps", "2"]) == 0
    assert main(args + ["--steps", "4"]) == 0  # resumes at step 2
    score, info = load_official(tmp_path / "m.pth", sigmas=torch.tensor([1.0, 0.2, 0.05, 0.01]))
    assert info["arch"] == "ncsn"
    lines = (tmp_path / "m.log.jsonl").read_text().splitlines()
    assert len(lines) == 4  # steps 0, 1, then 2, 3 after the resume


@pytest.mark.parametrize("kind", ["ncsn", "ncsnv2", "ncsnpp"])
def test_cli_export_keeps_ema_weights_only(kind, tmp_path):
    """`pds train` + `pds export`: the small file holds the EMA weights, loads through load_trained,
    and gives the same scores as the EMA applied by hand to the training checkpoint."""
    from pds.cli import main
    from pds.models.trained import build_network, load_trained, sidecar_path

    run, small = tmp_path / "run.pth", tmp_path / "small.pth"
    extra = ["--ch-mult", "1", "2", "--levels", "10"] if kind == "ncsnpp" else ["--levels", "4"]
    assert main(["train", "--kind", kind, "--data", "natural-crops", "--size", "8", "--n", "16", "--width", "8",
                 "--batch-size", "4", "--steps", "3", "--ema", "0.5", "--quiet", "--out", str(run), *extra]) == 0
    assert main(["export", "--checkpoint", str(run), "--out", str(small), "--wall-time", "1.5"]) == 0
    meta = __import__("json").loads(sidecar_path(small).read_text())
    assert meta["step"] == 3 and meta["wall_time_s"] == 1.5 and "CPU" in meta["hardware"]
    assert small.stat().st_size < run.stat().st_size  # no optimizer state
    score, info = load_trained(small)
    ckpt = torch.load(run, weights_only=True)
    net = build_network(meta["net"])
    if kind == "ncsnpp":
        net.load_state_dict({k[len("module."):]: v for k, v in ckpt["model"].items()})
        shadow = ckpt["ema"]["shadow_params"]
    else:
        net.load_state_dict({k[len("module."):]: v for k, v in ckpt[0].items()})
        shadow = list(ckpt[-1].values())
    with torch.no_grad():
        for p, s in zip([p for p in net.parameters() if p.requires_grad], shadow, strict=True):
            p.copy_(s)
    net.eval()
    x = torch.rand(2, meta["net"]["channels"], 8, 8)
    sig = torch.tensor(meta["sigmas"] or [0.3, 0.3])[[1, 1]].float() if kind != "ncsnpp" else torch.tensor([0.3, 0.3])
    with torch.no_grad():
        arg = sig if kind == "ncsnpp" else torch.tensor([1, 1])
        torch.testing.assert_close(score(x, sig), net(x, arg))
    assert info["kind"] == kind and info["step"] == 3


def test_cli_train_refuses_a_different_network_in_the_same_run(tmp_path):
    from pds.cli import main

    args = ["train", "--kind", "ncsn", "--data", "natural-crops", "--size", "8", "--n", "8", "--levels", "4",
            "--batch-size", "4", "--steps", "1", "--quiet", "--out", str(tmp_path / "r.pth")]
    assert main(args + ["--width", "4"]) == 0
    assert main(args + ["--width", "8"]) == 2


def test_load_trained_without_settings_names_the_missing_file(tmp_path):
    from pds.models.trained import load_trained

    (tmp_path / "x.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="x.json"):
        load_trained(tmp_path / "x.pth")


def test_ema_warm_up_forgets_the_initial_weights():
    """score_sde's rate min(decay, (1+n)/(10+n)): with fixed parameters p and shadow s0, after n updates
    s = p + (s0 − p)·∏ rate_k; without the warm-up the share of s0 would be decay^n (37 % at n = 1000)."""
    from pds.models.train import EMA

    net = torch.nn.Linear(3, 2)
    ema = EMA(net, 0.999)
    s0 = [s.clone() for s in ema.shadow]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    share = 1.0
    for k in range(1, 1001):
        ema.update(net)
        share *= min(0.999, (1 + k) / (10 + k))
    assert share < 0.01 < 0.999**1000
    for s, a, p in zip(ema.shadow, s0, net.parameters(), strict=True):
        torch.testing.assert_close(s, p.detach() + (a - p.detach()) * share, rtol=0, atol=1e-5)


# -- reproducibility, interruption, resumption (issue 10, item 4) ---------------------------------
RUN = ["train", "--kind", "ncsnpp", "--data", "natural-crops", "--size", "8", "--n", "16", "--width", "8",
       "--ch-mult", "1", "2", "--levels", "10", "--batch-size", "4", "--quiet"]


def test_two_fresh_runs_with_the_same_seed_are_bit_identical(tmp_path):
    from pds.cli import main

    for d in ("a", "b"):
        assert main([*RUN, "--steps", "3", "--seed", "7", "--out", str(tmp_path / d / "m.pth")]) == 0
    a, b = (tmp_path / d / "m.pth" for d in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a" / "m.log.jsonl").read_text() == (tmp_path / "b" / "m.log.jsonl").read_text()
    assert main([*RUN, "--steps", "3", "--seed", "8", "--out", str(tmp_path / "c" / "m.pth")]) == 0
    assert (tmp_path / "c" / "m.pth").read_bytes() != a.read_bytes()


def _log_steps(path):
    import json

    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_a_resumed_run_never_logs_a_step_twice(tmp_path):
    from pds.cli import main

    out = tmp_path / "m.pth"
    assert main([*RUN, "--steps", "3", "--save-every", "3", "--out", str(out)]) == 0
    log = out.with_suffix(".log.jsonl")
    # a kill between the log append and the checkpoint rename leaves lines past the checkpoint's step
    log.write_text(log.read_text() + '{"step": 3, "loss": 1.0}\n{"step": 4, "loss": 1.0}\n{"step": 5, "lo')
    assert main([*RUN, "--steps", "6", "--save-every", "3", "--out", str(out)]) == 0
    assert _log_steps(log) == list(range(6))


def test_a_failed_first_attempt_leaves_nothing_that_refuses_the_corrected_command(tmp_path, monkeypatch):
    import pds.models.train
    from pds.cli import main

    out = tmp_path / "m.pth"

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(pds.models.train, "dsm_loss", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        main([*RUN, "--steps", "2", "--out", str(out)])
    assert not out.exists() and not out.with_suffix(".json").exists()
    monkeypatch.undo()
    assert main([*RUN, "--steps", "2", "--width", "4", "--out", str(out)]) == 0  # corrected: another width


def test_sigterm_saves_says_how_to_resume_and_exits_without_a_traceback(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "m.pth"
    cmd = [sys.executable, "-m", "pds", *RUN, "--steps", "100000", "--save-every", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert out.exists(), proc.communicate()
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "Resume with the same command" in err and "--steps 100000" in err
    from pds.models.trained import read_sidecar

    step = read_sidecar(out)["step"]
    assert 1 <= step < 100000 and _log_steps(out.with_suffix(".log.jsonl")) == list(range(step))
    from pds.cli import main

    assert main([*RUN, "--steps", str(step + 2), "--save-every", "1", "--out", str(out)]) == 0
    assert _log_steps(out.with_suffix(".log.jsonl")) == list(range(step + 2))


def test_shipped_checkpoints_load_match_their_sidecars_and_fit_the_size_budget():
    """Every model in data/checkpoints loads through load_trained (which refuses a file whose SHA-256 differs from
    its sidecar's), has the step, kind and width its sidecar's command states, and the shipped weights stay within
    the 20 MB budget issue 12 set for all of them together."""
    import shlex

    from pds.models.trained import SHIPPED_DIR, load_trained, read_sidecar

    sidecars = sorted(SHIPPED_DIR.glob("*.json"))
    assert len(sidecars) >= 4, f"expected the shipped models in {SHIPPED_DIR}, found {[p.name for p in sidecars]}"
    total = 0
    for side in sidecars:
        pth = side.with_suffix(".pth")
        meta = read_sidecar(pth)
        _, config = load_trained(pth)
        args = shlex.split(meta["command"])
        assert args[args.index("--kind") + 1] == config["kind"], side.name
        assert int(args[args.index("--steps") + 1]) == meta["step"] == meta["train"]["steps"], side.name
        width = meta["net"].get("nf") or meta["net"].get("ngf")
        assert width is None or int(args[args.index("--width") + 1]) == width, side.name
        assert side.with_suffix(".log.jsonl").is_file(), side.name
        total += pth.stat().st_size
    assert total <= 20e6, f"shipped checkpoints take {total / 1e6:.1f} MB"
