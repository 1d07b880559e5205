"""pds.lessons.playground: every state draws (filters, samplers, T), the samples are those of pds.lab.experiments.draw,
and the sliders build from any state; the Gaussian playground's presets are the filters they name, its moments and
samples those of pds.exact, and each view shows only the controls that act. Their speed is measured
in benchmarks/playground.py."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pds.exact import pc_exact  # noqa: E402
from pds.lab.experiments import Method, crop_and_clip, draw  # noqa: E402
from pds.lab.image_sets import image_set  # noqa: E402
from pds.lessons import mechanism  # noqa: E402
from pds.lessons.playground import (  # noqa: E402
    PRESETS,
    SAMPLER_CHOICES,
    GaussianPlayground,
    GaussianState,
    Playground,
    State,
)
from pds.precondition import Preconditioner  # noqa: E402


@pytest.fixture(scope="module")
def playground():
    return Playground(image_set({"set": "fashion-mnist", "split": "train", "first": 60}), n=3)


def test_a_state_is_the_method_it_says():
    assert State().method() == Method("statistics", alpha=5.0)
    assert State(filter="parametric", centre="dc").method() == Method("parametric", r=0.2, lam=1.6, centre="dc")
    assert State(filter="none", sampler="heun").method() == Method(sampler="heun")
    assert State(sampler="euler").method() == Method(sampler="euler")  # a deterministic sampler takes no filter
    with pytest.raises(ValueError, match="State\\(filter='flat'\\): unknown filter"):
        State(filter="flat")


@pytest.mark.parametrize("state", [State(T=3), State(filter="parametric", T=3), State(filter="none", T=3),
                                   State(sampler="edm_churn", T=3), State(sampler="dpmpp_2m", T=3),
                                   State(sampler="pc_kept", T=3)])
def test_every_state_draws_and_equals_the_laboratory_draw(playground, state):
    x, nfe, dist = playground.sample(state)
    model, method = playground.model, state.method()
    gens = [torch.Generator().manual_seed(state.seed * 1000 + i) for i in range(3)]
    want, nfe_want = draw(model, model.preconditioner(method), method, 3, (3, *model.shape), gens, "cpu",
                          corrector="sample")
    assert nfe == nfe_want and torch.equal(x, crop_and_clip(want, model.pad))
    assert x.shape == (3, 1, 28, 28) and dist.shape == (3,) and bool((dist >= 0).all())
    fig = playground.figure(state)
    assert len(fig.axes) == 2 + 3 + 1  # multiplier (+ its colour bar), noise, three samples
    plt.close(fig)


def test_the_sliders_cover_every_field_and_sampler(playground):
    pytest.importorskip("ipywidgets")
    w = playground.widget(State(filter="parametric", T=7))
    names = {c.description or c.options[0] for c in w.children[:-1]}
    assert len(w.children) - 1 == len(State.__dataclass_fields__), names
    dropdown = [c for c in w.children if getattr(c, "options", None) == tuple(SAMPLER_CHOICES)]
    assert dropdown and "released" in SAMPLER_CHOICES and "edm_churn" in SAMPLER_CHOICES
    plt.close("all")


@pytest.fixture(scope="module")
def gaussian():
    return GaussianPlayground(size=16, n=2)


def test_a_gaussian_state_refuses_bad_settings_in_one_line():
    for kwargs, says in (({"preset": "Σ"}, "unknown preset"), ({"alpha": 1.0}, "alpha must be a number > 1"),
                         ({"T": 0}, "T must be an integer >= 1"), ({"snr": 0.0}, "snr must be a number > 0"),
                         ({"r": -0.1}, "r must be"), ({"lam": 0}, "lam must be")):
        with pytest.raises(ValueError, match=says):
            GaussianState(**kwargs)


def test_each_preset_is_the_filter_it_names(gaussian):
    target, shape = gaussian.target, gaussian.shape
    assert gaussian.preconditioner(GaussianState(preset="vanilla")) is None
    R = gaussian.preconditioner(GaussianState(preset="R", alpha=3.0))
    want = Preconditioner(freq=torch.log1p(target.expected_power()), alpha=3.0)
    assert torch.allclose(R.freq_gain, want.freq_gain, rtol=1e-12)
    sigma = gaussian.preconditioner(GaussianState(preset="P ∝ Σ"))  # drift gain s_k / max s, written from Σ
    assert torch.allclose(mechanism.drift_gain(sigma, shape), target.spectrum / target.spectrum.max(), rtol=1e-10)
    rule = gaussian.preconditioner(GaussianState(preset="rule (notebook 14)", T=7))
    assert torch.allclose(mechanism.drift_gain(rule, shape), mechanism.rule_gain(target, gaussian.settings, 7))
    assert gaussian.preconditioner(GaussianState(preset="optimum (notebook 12)", T=7)) is None  # none searched at 16²
    assert gaussian.optimum_budgets() == []


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_draws_the_exact_moments_and_samples_of_its_filter(gaussian, preset):
    state = GaussianState(preset=preset, T=6, snr=0.2, seed=3)
    pre = gaussian.preconditioner(state)
    e = gaussian.settings
    want = pc_exact(gaussian.target, e.sigma_min, e.sigma_max, e.levels, 0.2, iterations=6, preconditioner=pre)
    assert gaussian.exact(state, pre).w2_relative == pytest.approx(want.w2_relative, rel=1e-12)
    x = want.sample(gaussian.target.mean, 2, torch.Generator().manual_seed(3))  # the law of pc_exact, seed 3
    assert torch.allclose(gaussian.samples(state, pre), x, rtol=0, atol=1e-12)
    fig = gaussian.figure(state)
    legend = [t.get_text() for t in fig.axes[-2].get_legend().get_texts()]
    assert legend[0].startswith("vanilla: relative W2")
    assert (len(legend) == 2) == (pre is not None or preset == "vanilla")
    plt.close(fig)


def test_the_gaussian_controls_show_only_what_acts_on_the_preset(gaussian):
    pytest.importorskip("ipywidgets")
    box = gaussian.widget(GaussianState(preset="parametric", T=3))
    controls = {c.description: c for c in box.children[:-1]}
    assert len(controls) == len(GaussianState.__dataclass_fields__)
    shown = lambda: {d for d, c in controls.items() if c.layout.display != "none"}  # noqa: E731
    assert {"α", "r / H", "λ"} <= shown()
    controls["filter"].value = "R"
    assert "α" in shown() and not {"r / H", "λ"} & shown()
    controls["filter"].value = "rule (notebook 14)"
    assert not {"α", "r / H", "λ"} & shown() and {"T", "snr", "seed"} <= shown()
    plt.close("all")


def test_the_image_controls_hide_the_filter_for_a_sampler_that_takes_none(playground):
    pytest.importorskip("ipywidgets")
    box = playground.widget(State(filter="statistics", T=3))
    by_options = {tuple(getattr(c, "options", ())): c for c in box.children[:-1]}
    filt, sampler = by_options[("statistics", "parametric", "none")], by_options[tuple(SAMPLER_CHOICES)]
    centre = by_options[("paper", "dc")]
    assert filt.layout.display != "none" and centre.layout.display == "none"
    filt.value = "parametric"
    assert centre.layout.display != "none"
    sampler.value = "heun"
    assert filt.layout.display == "none" and centre.layout.display == "none"
    plt.close("all")
