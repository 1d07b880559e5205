"""Bad input is refused with a message naming the value and the fix, and nothing is written (issue 10, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pds.cli import main
from pds.filters import parametric_filter
from pds.models import NCSNv2
from pds.models.checkpoints import load_official
from pds.models.trained import SHIPPED_DIR, load_trained, sidecar_path, write_sidecar
from pds.precondition import Preconditioner
from pds.samplers import annealed_langevin, pc_sampler
from pds.schedules import LangevinLadder, geometric_sigmas, ve_schedule

PC = dict(sigma_min=0.01, sigma_max=5.0, num_scales=20)
SCHEDULE = ve_schedule(**PC)


class Counting:
    """A score that counts its calls (a check must fail before the first network evaluation)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma):
        self.calls += 1
        return -x


def listing(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


# -- samplers and the preconditioner -------------------------------------------------------------
def test_negative_snr_is_refused():
    score = Counting()
    with pytest.raises(ValueError, match="snr must be a finite number >= 0"):
        pc_sampler(score, (1, 1, 4, 4), SCHEDULE, snr=-0.16)
    assert score.calls == 0


@pytest.mark.parametrize("alpha", [1, 1.0, 0.5, 0])
def test_alpha_at_most_one_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha must be a number > 1"):
        Preconditioner(freq=parametric_filter(8, 2.0, 1.6), alpha=alpha)


@pytest.mark.parametrize(
    "sigmas, steps, step_lr, match",
    [
        ([0.1, 1.0, 0.01], 2, 1e-3, "decrease strictly"),
        ([1.0, 1.0, 0.01], 2, 1e-3, "decrease strictly"),
        ([1.0, 0.1, 0.01], 2, -1e-3, "step_lr must be a finite number > 0"),
        ([1.0, 0.1, 0.01], 2, 0.0, "step_lr must be a finite number > 0"),
        ([1.0, 0.1, 0.01], [0, 0, 0], 1e-3, "zero at every level"),
        ([1.0, 0.1, 0.01], 0, 1e-3, "zero at every level"),
        ([1.0, 0.1, 0.01], [1, -1, 1], 1e-3, "non-negative"),
    ],
)
def test_annealed_langevin_refuses_bad_schedules(sigmas, steps, step_lr, match):
    score = Counting()
    with pytest.raises(ValueError, match=match):
        annealed_langevin(score, (1, 1, 4, 4), LangevinLadder(sigmas, steps, step_lr))
    assert score.calls == 0


def test_filter_of_the_wrong_shape_fails_at_construction_and_before_sampling():
    with pytest.raises(ValueError, match=r"does not fit images of shape \[C, H, W\] = \(1, 4, 4\)"):
        Preconditioner(freq=parametric_filter(8, 2.0, 1.6), shape=(1, 4, 4))
    with pytest.raises(ValueError, match="disagree on axis H"):
        Preconditioner(freq=parametric_filter(8, 2.0, 1.6), space=torch.ones(1, 6, 6))
    pre = Preconditioner(freq=parametric_filter(8, 2.0, 1.6))
    score = Counting()
    with pytest.raises(ValueError, match="does not fit"):
        pc_sampler(score, (2, 1, 4, 4), SCHEDULE, snr=0.16, preconditioner=pre)
    with pytest.raises(ValueError, match="does not fit"):
        annealed_langevin(score, (2, 1, 4, 4), LangevinLadder(geometric_sigmas(1, 0.01, 3), 1, 1e-3),
                          preconditioner=pre)
    assert score.calls == 0


def test_a_pc_sampler_called_the_old_way_says_how_to_pass_a_schedule():
    from pds.modern import pc_kept

    for fn in (pc_sampler, pc_kept):
        with pytest.raises(TypeError, match=r"take a schedule, got float 0.01: pass pds.schedules.ve_schedule"):
            fn(Counting(), (1, 1, 4, 4), 0.01, snr=0.16)


def test_iterations_and_speed_up_together_are_refused():
    with pytest.raises(ValueError, match="either speed_up"):
        ve_schedule(**PC, iterations=5, speed_up=2.0)


# -- pds train -----------------------------------------------------------------------------------
TRAIN = ["train", "--kind", "ncsn", "--data", "natural-crops", "--size", "8", "--n", "8", "--width", "4",
         "--levels", "3", "--batch-size", "2", "--steps", "2", "--quiet"]


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--sigma-min", "1", "--sigma-max", "0.5"], "sigma_min < sigma_max"),
        (["--sigma-min", "0.5", "--sigma-max", "0.5"], "sigma_min < sigma_max"),
        (["--ema", "1.0"], r"EMA rate must lie in \[0, 1\)"),
        (["--ema", "-0.1"], r"EMA rate must lie in \[0, 1\)"),
        (["--width", "0"], "--width must be >= 1"),
        (["--levels", "0"], "--levels must be >= 1"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
        (["--batch-size", "-4"], "batch_size must be a positive integer"),
        (["--steps", "0"], "steps must be a positive integer"),
        (["--lr", "0"], "lr must be a finite number > 0"),
        (["--save-every", "0"], "save_every must be a positive integer"),
    ],
)
def test_train_refuses_bad_settings_and_writes_nothing(extra, match, tmp_path, capsys):
    out = tmp_path / "runs" / "m.pth"
    assert main([*TRAIN, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pds: error:") and "Traceback" not in err
    assert __import__("re").search(match, err), err
    assert listing(tmp_path) == []


def test_steps_zero_never_claims_a_file(tmp_path, capsys):
    out = tmp_path / "m.pth"
    assert main([*TRAIN, "--out", str(out), "--steps", "0"]) == 2
    assert "wrote" not in capsys.readouterr().out and not out.exists()
    assert main([*TRAIN, "--out", str(out)]) == 0  # two steps
    capsys.readouterr()
    before = out.read_bytes()
    assert main([*TRAIN, "--out", str(out)]) == 0  # already done: says so, rewrites nothing
    assert "nothing to do" in capsys.readouterr().out and out.read_bytes() == before


def test_n_larger_than_the_folder_says_how_many_were_used(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "f.npz"
    assert main(["filters", "estimate", "--data", str(folder), "--size", "8", "--n", "50", "--out", str(out),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "--n 50 asked" in err and "using all 5" in err
    assert out.exists()


def test_paper_variant_with_infinite_entries_writes_nothing(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(0, 255, (8, 8), dtype=np.uint8)
        img[:2, :2] = 0  # a corner that is black in every image: mean 0, log 0 = -inf
        Image.fromarray(img).save(folder / f"{i}.png")
    out = tmp_path / "a.npz"
    assert main(["filters", "estimate", "--data", str(folder), "--size", "8", "--variant", "paper", "--out",
                 str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "-inf at" in err and "--variant released" in err and not out.exists()


# -- checkpoint files ----------------------------------------------------------------------------
def _tiny_ncsnv2(tmp_path, poison=False):
    torch.manual_seed(0)
    net = NCSNv2(ngf=4, channels=1, sigmas=torch.tensor([1.0, 0.1, 0.01]), image_size=8)
    state = {f"module.{k}": v.clone() for k, v in net.state_dict().items()}
    if poison:
        state["module.end_conv.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "v2.pth"
    torch.save([state, {}, 0, 1, {}], path)
    return path


def test_nan_weights_are_refused(tmp_path):
    load_official(_tiny_ncsnv2(tmp_path))
    with pytest.raises(ValueError, match=r"end_conv.weight holds 1 NaN/inf"):
        load_official(_tiny_ncsnv2(tmp_path, poison=True))


def test_sidecar_sha256_must_match_the_weights(tmp_path):
    path = _tiny_ncsnv2(tmp_path)
    meta = {"kind": "ncsnv2", "net": {"arch": "ncsnv2", "ngf": 4, "channels": 1, "image_size": 8},
            "sigmas": [1.0, 0.1, 0.01]}
    write_sidecar(path, meta)
    load_trained(path)
    raw = bytearray(path.read_bytes())
    torch.save([torch.load(path, weights_only=True)[0], {}, 0, 2, {}], path)  # another file, same name
    assert path.read_bytes() != bytes(raw)
    with pytest.raises(ValueError, match="SHA-256 .* but its sidecar"):
        load_trained(path)
    assert json.loads(sidecar_path(path).read_text())["weights_sha256"]


def test_truncated_checkpoints_fail_clearly_in_export_and_resume(tmp_path, capsys):
    out = tmp_path / "m.pth"
    assert main([*TRAIN, "--out", str(out)]) == 0
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(out), "--out", str(tmp_path / "small.pth")]) == 2
    err = capsys.readouterr().err
    assert "not a readable PyTorch checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "small.pth").exists()
    assert main([*TRAIN, "--out", str(out), "--steps", "4"]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err


def test_exporting_an_exported_file_says_why(tmp_path, capsys):
    out, small = tmp_path / "m.pth", tmp_path / "small.pth"
    assert main([*TRAIN, "--out", str(out)]) == 0
    assert main(["export", "--checkpoint", str(out), "--out", str(small)]) == 0
    assert main(["export", "--checkpoint", str(small), "--out", str(tmp_path / "again.pth")]) == 2
    assert "cannot be resumed" in capsys.readouterr().err


# -- what a new user still hit (issue 22): one line naming the problem and the fix ----------------------------------
def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_a_sidecar_given_as_the_checkpoint_names_the_weights_beside_it(tmp_path, capsys):
    from pds.models.trained import SHIPPED_DIR

    code, err = run_cli(["sample", "--checkpoint", str(SHIPPED_DIR / "ncsn_fashion28.json"), "--method", "vanilla",
                         "--T", "2", "--count", "2", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "settings sidecar" in err and "ncsn_fashion28.pth" in err and "changed or replaced" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="settings sidecar of a checkpoint, not its weights"):
        load_trained(tmp_path / "missing.json")


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    code, err = run_cli(["sample", "--checkpoint", "ncsn_fashion28", "--method", "vanilla", "--T", "2", "--count",
                         "2", "--out", str(target)], capsys)
    assert code == 2 and "is a file, not a folder" in err and target.read_text() == "not a folder"


@pytest.mark.parametrize("command", [["filters", "estimate", "--out", "x.npz"],
                                     ["train", "--kind", "ncsn", "--out", "x.pth", "--steps", "1"]])
def test_data_that_does_not_exist_is_named_first(command, tmp_path, capsys):
    args = [a if not a.startswith("x.") else str(tmp_path / a) for a in command]
    code, err = run_cli([*args, "--data", str(tmp_path / "nonexistent")], capsys)
    assert code == 2 and "no such file or folder" in err and "needs a size" not in err
    assert listing(tmp_path) == []


def test_an_unknown_notebook_is_one_line_and_exit_2(capsys):
    from pds.publish.notebooks import main as notebooks_main

    assert notebooks_main(["--profile", "smoke", "99"]) == 2
    err = capsys.readouterr().err
    assert "no notebook matches '99'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_loaded_score_models_are_in_inference_mode():
    score, _ = load_trained("ncsn_fashion28")
    assert not score.training and not any(p.requires_grad for p in score.parameters())
    x = torch.rand(2, 1, 28, 28)
    assert not score(x, 1.0).requires_grad  # no autograd graph, even outside torch.no_grad()
    pp, _ = load_trained("ncsnpp_fashion32")
    assert not pp.training and not any(p.requires_grad for p in pp.parameters())


# -- the eight failures of issue 27: each one line naming the value and the fix, nothing written ----------------
SAMPLE = ["sample", "--checkpoint", "ncsn_fashion28", "--method", "vanilla", "--T", "2", "--count", "2"]


@pytest.mark.parametrize("device, says", [("mps", "runs on cpu or cuda"), ("gpu0", "is not a device name"),
                                          ("cuda:7", "cuda")])
def test_a_device_that_cannot_be_used_is_a_usage_error(device, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*SAMPLE, "--out", str(tmp_path / "out"), "--device", device])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and says in err and "Traceback" not in err and device in err
    assert err.strip().splitlines()[-1].startswith("pds sample: error: argument --device")
    assert listing(tmp_path) == []


def test_an_output_under_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, err = run_cli(["train", "--kind", "ncsn", "--steps", "1", "--out", str(blocker / "t.pth")], capsys)
    assert code == 2 and f"{blocker} is a file, so nothing can be written under it" in err
    code, err = run_cli([*SAMPLE, "--out", str(blocker / "run")], capsys)
    assert code == 2 and "nothing can be written under it" in err and listing(tmp_path) == [Path("a_file")]


def test_a_checkpoint_of_garbage_bytes_is_not_a_pytorch_checkpoint(tmp_path, capsys):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(7, 250)) * 4)
    code, err = run_cli([*SAMPLE[:2], str(garbage), *SAMPLE[3:], "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "is not a PyTorch checkpoint" in err and "Unsupported operand" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    cut = tmp_path / "cut.pth"
    cut.write_bytes((SHIPPED_DIR / "ncsn_fashion28.pth").read_bytes()[:5000])  # a real one, truncated
    code, err = run_cli([*SAMPLE[:2], str(cut), *SAMPLE[3:], "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "truncated or corrupt" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("grid, says", [("folder", "is a folder: name a file"), ("grid.npz", "name an image file")])
def test_a_grid_that_is_not_an_image_file_is_refused_before_sampling(grid, says, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    code, err = run_cli([*SAMPLE, "--out", str(tmp_path / "out"), "--grid", str(tmp_path / grid)], capsys)
    assert code == 2 and says in err and not (tmp_path / "out").exists()


def test_notebooks_out_under_a_file_is_refused_before_running(tmp_path, capsys):
    from pds.publish.notebooks import main as notebooks_main

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert notebooks_main(["--profile", "smoke", "--out", str(blocker / "x"), "01"]) == 2
    err = capsys.readouterr().err
    assert "nothing can be written under it" in err and len(err.strip().splitlines()) == 1


def test_an_unknown_trained_model_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match=r"unknown checkpoint 'nope': .*ncsn_fashion28"):
        load_trained("nope")


@pytest.mark.parametrize("sampler", ["pc", "langevin", "heun"])
def test_a_score_of_the_wrong_shape_is_named_at_its_first_call(sampler):
    from pds.modern import heun
    from pds.schedules import edm_sigmas

    calls = []

    def score(x, sigma):  # e.g. a network that returns one channel fewer
        calls.append(sigma)
        return x[:, :1]

    with pytest.raises(ValueError, match=r"returned \(2, 1, 4, 4\) for an input of shape \(2, 3, 4, 4\)"):
        if sampler == "pc":
            pc_sampler(score, (2, 3, 4, 4), SCHEDULE, snr=0.16)
        elif sampler == "langevin":
            annealed_langevin(score, (2, 3, 4, 4), LangevinLadder(geometric_sigmas(1, 0.01, 3), 1, 1e-3))
        else:
            heun(score, (2, 3, 4, 4), edm_sigmas(0.01, 5.0, 4))
    assert len(calls) == 1
    with pytest.raises(ValueError, match="returned float"):
        pc_sampler(lambda x, s: 0.0, (2, 3, 4, 4), SCHEDULE, snr=0.16)


def test_a_book_without_executed_notebooks_is_one_line_and_leaves_the_old_book(tmp_path, capsys):
    from pds.publish.book import main as book_main

    old = tmp_path / "book"
    old.mkdir()
    (old / "index.html").write_text("the book built before")
    assert book_main(["--profile", "smoke", "--src", str(tmp_path / "nothing"), "--out", str(old)]) == 2
    err = capsys.readouterr().err
    assert "no executed notebooks" in err and len(err.strip().splitlines()) == 1
    assert (old / "index.html").read_text() == "the book built before" and not (old / "mathjax").exists()


def test_a_diffusers_unet_without_its_scheduler_says_what_to_give(tmp_path, capsys):
    diffusers = pytest.importorskip("diffusers")
    unet = diffusers.UNet2DModel(sample_size=8, layers_per_block=1, block_out_channels=(32, 64),
                                 down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
                                 up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"), time_embedding_type="fourier",
                                 norm_num_groups=32, attention_head_dim=8)
    unet.save_pretrained(tmp_path / "alone")
    code, err = run_cli(["sample", "--checkpoint", str(tmp_path / "alone"), "--method", "vanilla", "--T", "2",
                         "--count", "1", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "without its scheduler" in err and "model_index.json" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


# -- issue 37: three inputs a new-user trial found accepted or misreported ------------------------------------------
def test_cache_verify_names_a_missing_samples_file(tmp_path):
    """A folder that lists a run but lacks its samples file: the error names that file, not 'no run'."""
    import subprocess
    import sys

    from pds.storage import DATA_DIR

    shipped = DATA_DIR / "results" / "quality" / "default"
    row = json.loads((shipped / "results.jsonl").read_text().splitlines()[0])
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    out = subprocess.run([sys.executable, "-m", "pds.lab.recompute", "verify", row["key"], "--folder", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert f"{row['key']}.npz is missing" in out.stderr
    out = subprocess.run([sys.executable, "-m", "pds.lab.recompute", "verify", "0123456789abcdef", "--folder",
                          str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "no run 0123456789abcdef in" in out.stderr


@pytest.mark.parametrize("sigma", [-1.0, 0.0, float("nan"), float("inf")])
def test_the_k_diffusion_denoiser_refuses_a_sigma_that_is_no_noise_level(sigma):
    from pds.integrations.kdiffusion import KDenoiser

    score = Counting()
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        KDenoiser(score)(torch.zeros(2, 1, 4, 4), torch.tensor([0.5, sigma]))
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        KDenoiser(score)(torch.zeros(2, 1, 4, 4), torch.tensor(sigma))
    assert score.calls == 0


@pytest.mark.parametrize("field, value", [("sampler", "foo"), ("filter", "wiener"), ("centre", "middle")])
def test_the_playground_refuses_an_unknown_setting_where_the_state_is_made(field, value):
    from pds.lessons.playground import SAMPLER_CHOICES, State

    with pytest.raises(ValueError, match=f"State\\({field}='{value}'\\): unknown {field}; choose one of") as err:
        State(**{field: value})
    if field == "sampler":
        assert all(name in str(err.value) for name in SAMPLER_CHOICES)


def test_a_registered_samplers_entry_names_the_settings_it_lacks():
    from pds.samplers import Settings, sampler

    bare = Settings(0.01, 5.0)
    with pytest.raises(ValueError, match=r"the langevin samplers need the settings' n_steps_each, step_lr, levels"):
        sampler("annealed_langevin").schedule(bare, 5)
    with pytest.raises(ValueError, match=r"the pc samplers need the settings' levels"):
        sampler("pc").schedule(bare, 5)
    with pytest.raises(ValueError, match=r"the pc samplers need the settings' snr"):
        sampler("pc_kept").options(bare)
    assert sampler("euler").schedule(bare, 3)[-1] == 0.0 and sampler("heun").options(bare) == {}
