"""pds.lab.playground: every state draws (filters, samplers, T), the samples are those of pds.lab.experiments.draw,
and the sliders build from any state. Its speed (≤ 1 s per change on a CPU) is measured in benchmarks/playground.py."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pds.lab.experiments import Method, crop_and_clip, draw  # noqa: E402
from pds.lab.image_sets import image_set  # noqa: E402
from pds.lab.playground import SAMPLER_CHOICES, Playground, State  # noqa: E402


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
