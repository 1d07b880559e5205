"""pds.integrations: PDS as a diffusers scheduler, checked three ways on random-weight NCSN++ UNets in the hub layout
at 16² and 32² — (a) with the identity filter it is diffusers' own ScoreSdeVeScheduler bit for bit, (b) with filters it
is a reference loop written here (diffusers' update rule with pds.precondition's drift and noise), (c) against
pds.samplers.pc_sampler (the released rules) it is equal bit for bit where the rules coincide and differs where they
do not — its save / load round trip with the filters, the README's lines on a hub-layout folder, `pds sample` on that
folder; and k-diffusion's conventions (denoiser wrapper both ways, the coloured noise_sampler)."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch

from pds.filters import save_filters, synthetic_filters
from pds.precondition import Preconditioner, operator_matrix
from pds.storage import REPO_ROOT

diffusers = pytest.importorskip("diffusers")
from diffusers import ScoreSdeVePipeline, ScoreSdeVeScheduler, UNet2DModel  # noqa: E402

from pds.integrations.diffusers import FILTERS_NAME, PDSScoreSdeVeScheduler, last_mean  # noqa: E402
from pds.integrations.diffusers_unet import DiffusersScore  # noqa: E402
from pds.integrations.kdiffusion import KDenoiser, noise_sampler, score_of_denoiser  # noqa: E402
from pds.samplers import pc_sampler  # noqa: E402
from pds.schedules import ve_schedule  # noqa: E402

SETTINGS = dict(num_train_timesteps=6, snr=0.16, sigma_min=0.01, sigma_max=50.0)  # a short VE ladder
BATCH = 2


def ncsnpp_unet(size: int, seed: int = 0) -> UNet2DModel:
    """A random-weight NCSN++ as the hub's google/ncsnpp-* models are (Fourier embedding of σ, skip blocks), small."""
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=size, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
                       down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
                       up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"), time_embedding_type="fourier",
                       norm_num_groups=32, attention_head_dim=8).eval()


@pytest.fixture(scope="module", params=[16, 32], ids=["16", "32"])
def unet(request):
    return ncsnpp_unet(request.param)


def filters_of(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    freq, space = synthetic_filters(3, size, space=True)
    return freq, space


def run_pipeline(unet, scheduler, steps: int, seed: int = 3) -> torch.Tensor:
    """The pipeline's last x̄ (before its clamp to [0, 1], which would hide every difference of a random network)."""
    return last_mean(ScoreSdeVePipeline(unet, scheduler), batch_size=BATCH, num_inference_steps=steps,
                     output_type="np", generator=torch.Generator().manual_seed(seed))


# -- (a) the identity filter is diffusers' own scheduler, bit for bit ----------------------------------------------
def test_identity_filter_is_diffusers_bit_for_bit(unet):
    size = unet.config.sample_size
    ours = PDSScoreSdeVeScheduler(**SETTINGS, preconditioner=Preconditioner(freq=torch.ones(3, size, size)))
    theirs = ScoreSdeVeScheduler(**SETTINGS)
    assert torch.equal(run_pipeline(unet, ours, 6), run_pipeline(unet, theirs, 6))
    assert "step_pred" not in vars(ours)  # last_mean gave the scheduler its own method back
    plain = PDSScoreSdeVeScheduler.from_config(theirs.config)  # a pipeline's config, no filter: vanilla
    assert plain.preconditioner is None and torch.equal(run_pipeline(unet, plain, 4), run_pipeline(unet, theirs, 4))


# -- (b) with filters: a reference loop, diffusers' update rule with pds.precondition's operators ---------------------
def reference_loop(unet, pre: Preconditioner, steps: int, seed: int = 3) -> torch.Tensor:
    """diffusers' ScoreSdeVePipeline written out (its draws in its order, its σ grids read from its scheduler) with
    g = pre.drift(s) and η = pre.noise(ξ) in the corrector, pre.drift(G² s) and G·pre.noise(ξ) in the predictor."""
    grid = ScoreSdeVeScheduler(**SETTINGS)
    grid.set_timesteps(steps)
    grid.set_sigmas(steps)
    gen = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    x = torch.randn(BATCH, 3, size, size, generator=gen) * SETTINGS["sigma_max"]
    with torch.no_grad():
        for i, t in enumerate(grid.timesteps):
            sigma = grid.sigmas[i] * torch.ones(BATCH)
            g = pre.drift(unet(x, sigma).sample)
            eta = pre.noise(torch.randn(x.shape, generator=gen))
            norm = lambda v: torch.norm(v.reshape(BATCH, -1), dim=-1).mean()  # noqa: E731
            eps = 2 * (SETTINGS["snr"] * norm(eta) / norm(g)) ** 2
            x = x + eps * g + torch.sqrt(2 * eps) * eta
            j = int(t * (steps - 1))
            g2 = grid.discrete_sigmas[j] ** 2 - (grid.discrete_sigmas[j - 1] ** 2 if j > 0 else 0.0)
            mean = x + pre.drift(torch.sqrt(g2) ** 2 * unet(x, sigma).sample)
            x = mean + torch.sqrt(g2) * pre.noise(torch.randn(x.shape, generator=gen))
    return mean


@pytest.mark.parametrize("space", [False, True], ids=["R", "R+A"])
def test_filters_equal_the_reference_loop(unet, space):
    freq, a = filters_of(unet.config.sample_size)
    pre = Preconditioner(freq=freq, space=a if space else None, alpha=5.0)
    got = run_pipeline(unet, PDSScoreSdeVeScheduler(**SETTINGS, preconditioner=pre), 6)
    want = reference_loop(unet, pre, 6)
    assert torch.equal(got, want)  # the same operations in the same order: the same bits
    vanilla = run_pipeline(unet, ScoreSdeVeScheduler(**SETTINGS), 6)
    assert float((got - vanilla).abs().max()) > 1e-3 * float(vanilla.abs().max())  # the filter does something


# -- (c) against pds.samplers.pc_sampler: equal where the rules coincide, different where they do not ---------------
def released(unet, pre, steps: int, seed: int = 3, white_prior: bool = True, **schedule) -> torch.Tensor:
    """pc_sampler on the same UNet; with ``white_prior`` started from the pipeline's σ_max·ξ (the same generator)."""
    gen = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    start = torch.randn(BATCH, 3, size, size, generator=gen) * SETTINGS["sigma_max"] if white_prior else \
        (BATCH, 3, size, size)
    sched = ve_schedule(SETTINGS["sigma_min"], SETTINGS["sigma_max"], SETTINGS["num_train_timesteps"],
                        iterations=steps, **schedule)
    return pc_sampler(DiffusersScore(unet), start, sched, snr=SETTINGS["snr"], preconditioner=pre, generator=gen)[0]


@pytest.mark.parametrize("method", ["vanilla", "pds"])
def test_the_released_rules_where_they_coincide_and_where_not(unet, method):
    size = unet.config.sample_size
    freq, a = filters_of(size)
    pre = None if method == "vanilla" else Preconditioner(freq=freq, space=a, alpha=5.0)
    n = SETTINGS["num_train_timesteps"]

    def pipe(steps, **extra):
        return run_pipeline(unet, PDSScoreSdeVeScheduler(**{**SETTINGS, **extra}, preconditioner=pre), steps)

    def rel(x, y):
        return float((x - y).abs().max() / y.abs().max())

    # full length: the same σ grids, draws and update rules (diffusers' are score_sde's)
    assert torch.equal(pipe(n), released(unet, pre, n))
    # shortened to T = n/2: the released code ends its time grid at 1e-5·(n/T), diffusers at sampling_eps
    short = released(unet, pre, n // 2)
    assert rel(pipe(n // 2), short) > 0
    assert torch.equal(pipe(n // 2, sampling_eps=1e-5 * n / (n // 2)), short)
    if pre is not None:  # the released prior σ_max·M⁻¹ξ, which the pipeline's white σ_max·ξ is not
        sched = PDSScoreSdeVeScheduler(**SETTINGS, preconditioner=pre)
        x_t = sched.prior((BATCH, 3, size, size), generator=torch.Generator().manual_seed(3))
        gen = torch.Generator().manual_seed(3)
        assert torch.equal(x_t, pre.noise(torch.randn(BATCH, 3, size, size, generator=gen)) * SETTINGS["sigma_max"])
        assert rel(pipe(n), released(unet, pre, n, white_prior=False)) > 1e-3


def test_the_sigma_grids_agree_at_the_papers_lengths():
    """At 1000 and 2000 steps diffusers' grids are the released ones: t and the discrete σ_j equal, σ(t_i) to its
    last bit (diffusers computes it one element at a time, ve_schedule as a vector, whose kernels may round the other
    way)."""
    for n, sigma_max in ((1000, 50.0), (2000, 1348.0)):
        ours = ve_schedule(0.01, sigma_max, n, iterations=n)
        theirs = ScoreSdeVeScheduler(num_train_timesteps=n, sigma_min=0.01, sigma_max=sigma_max)
        theirs.set_timesteps(n)
        theirs.set_sigmas(n)
        assert torch.equal(theirs.timesteps, ours.t)
        torch.testing.assert_close(theirs.discrete_sigmas, torch.sort(ours.sigma_disc).values, rtol=2.4e-7, atol=0)
        torch.testing.assert_close(theirs.sigmas, ours.sigma, rtol=2.4e-7, atol=0)


# -- configuration: from_config, save_pretrained / from_pretrained with the filters ---------------------------------
def test_save_and_load_round_trip_with_the_filters(tmp_path):
    unet = ncsnpp_unet(32)
    freq, a = filters_of(32)
    file = save_filters(tmp_path / "f.npz", freq, a, source="synthetic")
    schedulers = {
        "file": PDSScoreSdeVeScheduler(**SETTINGS, filters=str(file), alpha=4.0, space=True),
        "preconditioner": PDSScoreSdeVeScheduler(**SETTINGS, preconditioner=Preconditioner(freq=freq, space=a)),
        "parametric": PDSScoreSdeVeScheduler(**SETTINGS, parametric_r=0.2, parametric_lam=1.6),
    }
    for name, sched in schedulers.items():
        folder = tmp_path / name
        sched.save_pretrained(folder)
        assert (folder / FILTERS_NAME).is_file() == (name != "parametric")
        back = PDSScoreSdeVeScheduler.from_pretrained(folder)
        assert back.preconditioner_for((3, 32, 32)) is not None
        assert torch.equal(run_pipeline(unet, back, 4), run_pipeline(unet, sched, 4)), name
    assert schedulers["file"].config.filters == str(file)  # saving leaves the live config as it was
    # a pipeline saved with the scheduler reloads it with its filters: the whole pipeline, or the scheduler alone
    ScoreSdeVePipeline(unet, schedulers["file"]).save_pretrained(tmp_path / "pipe")
    want = run_pipeline(unet, schedulers["file"], 4)
    for back in (ScoreSdeVePipeline.from_pretrained(tmp_path / "pipe").scheduler,
                 PDSScoreSdeVeScheduler.from_pretrained(tmp_path / "pipe", subfolder="scheduler")):
        assert isinstance(back, PDSScoreSdeVeScheduler) and torch.equal(run_pipeline(unet, back, 4), want)


def test_bad_configurations_are_refused_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="pds filters estimate"):
        PDSScoreSdeVeScheduler(filters=str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="both parametric_r"):
        PDSScoreSdeVeScheduler(parametric_r=0.2)
    with pytest.raises(ValueError, match="'none'"):
        PDSScoreSdeVeScheduler(parametric_r=0.2, parametric_lam=1.6, alpha="five")
    with pytest.raises(ValueError, match="not several"):
        PDSScoreSdeVeScheduler(parametric_r=0.2, parametric_lam=1.6, preconditioner=Preconditioner())
    with pytest.raises(ValueError, match="does not fit"):
        sched = PDSScoreSdeVeScheduler(**SETTINGS, preconditioner=Preconditioner(freq=torch.ones(3, 8, 8) * 2))
        run_pipeline(ncsnpp_unet(32), sched, 2)
    x = torch.zeros(1, 3, 8, 8)
    for cls, says in ((ScoreSdeVeScheduler, "set_timesteps"), (PDSScoreSdeVeScheduler, "call set_timesteps")):
        unset = cls(**SETTINGS)
        unset.timesteps = None  # as before set_timesteps: diffusers' guard, where this scheduler said len(None)
        for step in (lambda s=unset: s.step_pred(x, 1.0, x), lambda s=unset: s.step_correct(x, x)):
            with pytest.raises(ValueError, match=says):
                step()


# -- the README's lines, on a random-weight folder in the hub layout ------------------------------------------------
@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """A folder as google/ncsnpp-* are on the hub (model_index.json, unet/, scheduler/), random weights."""
    folder = tmp_path_factory.mktemp("hub") / "ncsnpp-celebahq-256"
    ScoreSdeVePipeline(ncsnpp_unet(32), ScoreSdeVeScheduler(**SETTINGS)).save_pretrained(folder)
    return folder


def readme_block(marker: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    found = re.search(rf"<!-- {marker} -->\s*```(?:python|bash)\n(.*?)```", text, re.S)
    assert found, f"README.md has no code block after <!-- {marker} -->"
    return found.group(1)


def test_the_readme_lines_add_pds_to_a_hub_layout_pipeline(hub_folder, tmp_path, monkeypatch):
    code = readme_block("diffusers-example")
    hub_id = re.search(r'from_pretrained\("([^"]+)"\)', code).group(1)
    filters = re.search(r'filters="([^"]+)"', code).group(1)
    assert hub_id.startswith("google/ncsnpp-")
    freq, a = filters_of(32)
    monkeypatch.chdir(tmp_path)
    (tmp_path / filters).parent.mkdir(parents=True, exist_ok=True)
    save_filters(tmp_path / filters, freq, a, source="synthetic")
    steps = re.search(r"num_inference_steps=(\d+)", code).group(1)
    local = code.replace(hub_id, str(hub_folder)).replace(f"num_inference_steps={steps}", "num_inference_steps=3")
    scope: dict = {}
    exec(compile(local, "README.md (diffusers example)", "exec"), scope)
    images = scope["images"]
    assert len(images) == 1 and images[0].size == (32, 32)
    assert isinstance(scope["pipe"].scheduler, PDSScoreSdeVeScheduler)
    assert scope["pipe"].scheduler.preconditioner is not None


def test_pds_sample_reads_a_hub_layout_folder(hub_folder, tmp_path):
    line = readme_block("diffusers-sample").strip().replace("\\\n", " ")
    args = line.split()[2:]  # after ".venv/bin/pds sample"
    args = [str(hub_folder) if a.startswith("path/to/") else a for a in args]
    args[args.index("--T") + 1], args[args.index("--count") + 1] = "3", "2"
    args[args.index("--out") + 1] = str(tmp_path / "out")
    args[args.index("--filters") + 1] = str(save_filters(tmp_path / "f.npz", *filters_of(32)))
    done = subprocess.run([sys.executable, "-m", "pds", "sample", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 samples of diffusers/ncsnpp-celebahq-256" in done.stdout
    from pds.cli import main  # the same command in this process (a second interpreter costs seconds)

    assert main(["sample", "--checkpoint", str(hub_folder / "unet"), "--method", "vanilla", "--T", "2", "--count", "1",
                 "--out", str(tmp_path / "o2")]) in (0, None)  # its scheduler/ found beside it


# -- k-diffusion's conventions ------------------------------------------------------------------------------------
def gaussian_score(var: torch.Tensor):
    """The exact score of N(0, diag(var)) noised to σ: −x / (var + σ²)."""
    return lambda x, sigma: -x / (var + float(sigma) ** 2)


def test_denoiser_wrapper_both_ways_in_float64():
    var = torch.rand(1, 2, 4, 4, dtype=torch.float64) + 0.1
    score = gaussian_score(var)
    den = KDenoiser(score)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    for sigma in (0.5, torch.tensor(0.5), torch.full((3,), 0.5, dtype=torch.float64)):
        torch.testing.assert_close(den(x, sigma), var / (var + 0.25) * x, rtol=1e-12, atol=0)  # Tweedie, closed form
    per_sample = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    want = torch.stack([var[0] / (var[0] + s**2) * x[i] for i, s in enumerate(per_sample)])
    torch.testing.assert_close(den(x, per_sample), want, rtol=1e-12, atol=0)
    back = score_of_denoiser(den)
    torch.testing.assert_close(back(x, 2.0), score(x, 2.0), rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="one per sample"):
        den(x, torch.ones(2))


def test_noise_sampler_draws_pds_noise_with_covariance_m_inv_m_inv_t():
    freq, a = synthetic_filters(1, 4, space=True)
    pre = Preconditioner(freq=freq, space=a, alpha=5.0)
    x = torch.zeros(20000, 1, 4, 4, dtype=torch.float64)
    draw = noise_sampler(x, pre, generator=torch.Generator().manual_seed(0))
    eta = draw(1.0, 0.5).reshape(len(x), -1)
    cov = eta.T @ eta / len(x)
    m_inv = torch.from_numpy(operator_matrix(pre.M_inv, (1, 4, 4)))
    want = m_inv @ m_inv.T
    # Monte Carlo: each entry within 5 standard errors of its exact value (var of a product of two Gaussians)
    se = torch.sqrt((torch.diag(want)[:, None] * torch.diag(want)[None, :] + want**2) / len(x))
    assert bool(((cov - want).abs() <= 5 * se).all())
    same = noise_sampler(x[:2], pre, generator=torch.Generator().manual_seed(1))()
    torch.testing.assert_close(same, pre.noise(torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1),
                                                           dtype=torch.float64)), rtol=0, atol=0)
    plain = noise_sampler(x[:2], None, generator=torch.Generator().manual_seed(1))()
    assert torch.equal(plain, torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64))


def k_diffusion_sampling():
    """k-diffusion's ``sampling`` module, imported without its package ``__init__`` (which loads its training
    dependencies: wandb, kornia, clean-fid, clip...); ``make setup`` installs k-diffusion with ``--no-deps`` and the
    two libraries its sampling module needs (torchsde, torchdiffeq). Skips in one line where it is absent."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        pytest.skip("k-diffusion is not installed: pip install --no-deps k-diffusion torchsde torchdiffeq")
    if "k_diffusion" not in sys.modules:
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = package
    return importlib.import_module("k_diffusion.sampling")


def test_k_diffusion_s_own_samplers_run_pds_models_and_noise():
    """k-diffusion's sample_euler and sample_heun on KDenoiser(score) equal pds.modern's euler and heun on the score
    (float64, 1e-12); sample_euler_ancestral with noise_sampler(x, None, generator) equals its own default noise drawn
    from the global generator with the same seed, bit for bit, and with a preconditioner equals its rule written out
    here with M⁻¹ξ; KDenoiser holds a module score, so .to()/.eval()/parameters reach it."""
    kd = k_diffusion_sampling()
    from pds.modern import euler, heun
    from pds.schedules import edm_sigmas

    var = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.2
    score, sigmas = gaussian_score(var), edm_sigmas(0.02, 20.0, 12)
    model, s = KDenoiser(score), torch.tensor(sigmas, dtype=torch.float64)
    x0 = torch.randn(6, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    for ours, theirs in ((euler, kd.sample_euler), (heun, kd.sample_heun)):
        want, _ = ours(score, x0, sigmas, dtype=torch.float64)
        torch.testing.assert_close(theirs(model, x0.clone(), s, disable=True), want, rtol=1e-12, atol=1e-12)
    torch.manual_seed(1)
    default = kd.sample_euler_ancestral(model, x0.clone(), s, disable=True)
    white = kd.sample_euler_ancestral(model, x0.clone(), s, disable=True,
                                      noise_sampler=noise_sampler(x0, None, torch.Generator().manual_seed(1)))
    assert torch.equal(white, default)
    pre = Preconditioner(freq=synthetic_filters(1, 8, space=False)[0], alpha=5.0)
    coloured = kd.sample_euler_ancestral(model, x0.clone(), s, disable=True,
                                         noise_sampler=noise_sampler(x0, pre, torch.Generator().manual_seed(1)))
    written = euler_ancestral(model, x0.clone(), sigmas, noise_sampler(x0, pre, torch.Generator().manual_seed(1)))
    torch.testing.assert_close(coloured, written, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(coloured, white)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    held = KDenoiser(_ModuleScore(net))
    assert len(list(held.parameters())) == 2 and held.double().score.conv.weight.dtype == torch.float64
    assert held.eval().score.training is False


class _ModuleScore(torch.nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x, sigma):
        return self.conv(x) / sigma


def euler_ancestral(model, x, sigmas, noise_sampler):
    """k-diffusion's Euler ancestral step rule, written here from its paper (Karras et al. 2022 ancestral split):
    σ_down = √(σ_next² − σ_up²), σ_up = min(σ_next, √(σ_next²(σ² − σ_next²)/σ²))."""
    for sigma, nxt in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = (x - model(x, sigma * x.new_ones(len(x)))) / sigma
        up = min(nxt, math.sqrt(nxt**2 * (sigma**2 - nxt**2) / sigma**2))
        down = math.sqrt(nxt**2 - up**2)
        x = x + d * (down - sigma)
        if nxt > 0:
            x = x + noise_sampler(sigma, nxt) * up
    return x


def test_a_k_diffusion_style_sampler_runs_pds_noise_on_a_pds_model():
    """A Gaussian target through KDenoiser and Euler ancestral with the coloured noise: the samples' variance per
    pixel is finite and the white-noise run (noise_sampler without a preconditioner) is the vanilla one exactly."""
    var = torch.full((1, 1, 8, 8), 0.5, dtype=torch.float64)
    model = KDenoiser(gaussian_score(var))
    sigmas = [10.0 * 0.7**k for k in range(20)] + [0.0]
    x0 = torch.randn(512, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    white = euler_ancestral(model, x0.clone(), sigmas, noise_sampler(x0, None, torch.Generator().manual_seed(1)))
    gen = torch.Generator().manual_seed(1)
    vanilla = x0.clone()
    for sigma, nxt in zip(sigmas[:-1], sigmas[1:], strict=True):  # the same rule with torch.randn written out
        d = (vanilla - model(vanilla, sigma)) / sigma
        up = min(nxt, math.sqrt(nxt**2 * (sigma**2 - nxt**2) / sigma**2))
        vanilla = vanilla + d * (math.sqrt(nxt**2 - up**2) - sigma)
        if nxt > 0:
            vanilla = vanilla + torch.randn(vanilla.shape, generator=gen, dtype=vanilla.dtype) * up
    assert torch.equal(white, vanilla)
    freq, _ = synthetic_filters(1, 8, space=False)
    pre = Preconditioner(freq=freq, alpha=5.0)
    coloured = euler_ancestral(model, x0.clone(), sigmas, noise_sampler(x0, pre, torch.Generator().manual_seed(1)))
    assert torch.isfinite(coloured).all() and not torch.equal(coloured, white)
    assert 0.2 < float(coloured.var()) < 1.0  # near the target's 0.5: the coloured noise changes it, not its scale
