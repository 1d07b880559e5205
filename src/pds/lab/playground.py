"""A playground for PDS (notebook 00): sliders for the filter, T and the sampler, on the exact score of a small set.

Each change redraws, in well under a second on a CPU (``benchmarks/playground.py``): the multiplier the sampler
applies to the noise per frequency (centred, DC in the middle), one noise draw η = M⁻¹ξ with that filter, and samples
from the exact score of the set (:class:`pds.scores.EmpiricalScore`, no model error) with the chosen sampler in T
steps, beside the nearest training image of each. The filter is the statistics R of Eq. 14 (normalised by α as
released), the parametric (r, λ) filter of Sec. 4.3 in either reading, or none (vanilla).

Under papermill and in the book the widgets do not run: :meth:`Playground.show` draws the default state as a static
figure first, then adds the sliders where a live kernel displays them. ipywidgets is imported only there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import torch

from pds.fourier import centred
from pds.lab.experiments import Method, crop_and_clip, draw
from pds.lab.image_sets import ImageSet, exact_model
from pds.models.configs import experiment as experiment_named
from pds.samplers import SAMPLERS

__all__ = ["State", "Playground", "SAMPLER_CHOICES"]

# The samplers that apply to an NCSN++-style model: the released PC sampler and the registry's pc / ode families.
SAMPLER_CHOICES = ("released", *(n for n, s in SAMPLERS.items() if s.family in ("pc", "ode") and n != "pc"))


@dataclass(frozen=True)
class State:
    """One setting of the playground: ``filter`` "statistics" | "parametric" | "none"; ``alpha`` the released
    normalisation (statistics filter); ``r`` (in units of H), ``lam`` and ``centre`` ("paper" | "dc") the parametric
    filter; ``T`` the sampler's steps; ``sampler`` one of :data:`SAMPLER_CHOICES`; ``seed`` its noise."""

    filter: str = "statistics"
    alpha: float = 5.0
    r: float = 0.2
    lam: float = 1.6
    centre: str = "paper"
    T: int = 20
    sampler: str = "released"
    seed: int = 0

    def __post_init__(self):
        for name, value, allowed in (("sampler", self.sampler, SAMPLER_CHOICES),
                                     ("filter", self.filter, ("statistics", "parametric", "none")),
                                     ("centre", self.centre, ("paper", "dc"))):
            if value not in allowed:
                raise ValueError(f"State({name}={value!r}): unknown {name}; choose one of {list(allowed)}")

    def method(self) -> Method:
        if self.filter == "none" or not SAMPLERS["pc" if self.sampler == "released" else self.sampler].preconditioned:
            return Method(sampler=self.sampler)
        if self.filter == "statistics":
            return Method("statistics", alpha=self.alpha, sampler=self.sampler)
        if self.filter == "parametric":
            return Method("parametric", r=self.r, lam=self.lam, centre=self.centre, sampler=self.sampler)
        raise ValueError(f"filter must be 'statistics', 'parametric' or 'none', got {self.filter!r}")


class Playground:
    """The exact score of ``images`` (an :class:`~pds.lab.image_sets.ImageSet`) with the sampler settings of the
    paper ``experiment`` (σ range, snr; zero-padded by ``pad`` as the sampler sees it); ``n`` samples per state."""

    def __init__(self, images: ImageSet, experiment: str = "cifar10_ncsnpp", pad: int = 2, n: int = 6):
        self.model = exact_model(images, experiment_named(experiment), pad=pad)
        self.n = int(n)

    def sample(self, state: State, pre=None) -> tuple[torch.Tensor, int, torch.Tensor]:
        """(samples in [0, 1] at the set's size, NFE, distance of each to its nearest training image); ``pre``: the
        state's preconditioner when the caller has built it already."""
        method = state.method()
        pre = self.model.preconditioner(method) if pre is None else pre
        gens = [torch.Generator().manual_seed(state.seed * 1000 + i) for i in range(self.n)]
        x, nfe = draw(self.model, pre, method, state.T, (self.n, *self.model.shape), gens, "cpu", corrector="sample")
        _, dist = self.model.score.nearest(x.clamp(0, 1))
        return crop_and_clip(x, self.model.pad), nfe, dist

    def figure(self, state: State):
        """The figure of one state: multiplier per frequency, a noise draw η = M⁻¹ξ, samples with their nearest
        distances."""
        pre = self.model.preconditioner(state.method())
        c, h, w = self.model.shape
        xi = torch.randn((1, c, h, w), generator=torch.Generator().manual_seed(state.seed), dtype=torch.float64)
        eta = xi if pre is None else pre.noise(xi)
        gain = torch.ones(h, w) if pre is None or pre.freq_gain is None else pre.freq_gain[0]
        x, nfe, dist = self.sample(state, pre)
        fig, axes = plt.subplots(1, 2 + self.n, figsize=(2.0 * (2 + self.n), 2.4))
        im = axes[0].imshow(centred(gain).numpy(), cmap="magma")
        fig.colorbar(im, ax=axes[0], fraction=0.046)
        axes[0].set_title("noise multiplier 1/R̃\n(DC in the middle)", fontsize=8)
        axes[1].imshow(eta[0, 0].numpy(), cmap="gray")
        axes[1].set_title("η = M⁻¹ξ", fontsize=8)
        for i, ax in enumerate(axes[2:]):
            ax.imshow(x[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"nearest {float(dist[i]):.2f}", fontsize=8)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        label = state.method().label
        fig.suptitle(f"{label}, T = {state.T}, NFE {nfe}", fontsize=9, y=1.04)
        return fig

    def show(self, state: State | None = None, live: bool = True):
        """Draw ``state`` (default: :class:`State`'s defaults) as a static figure; with ``live``, add the sliders
        (ipywidgets) below it, which redraw on every change where a kernel runs them. Returns the static figure."""
        state = state or State()
        fig = self.figure(state)
        plt.show()
        if live:
            from IPython.display import display

            display(self.widget(state))
        return fig

    def widget(self, state: State | None = None):
        """The sliders (ipywidgets.interactive) starting from ``state``."""
        import ipywidgets as widgets

        s = state or State()
        controls = dict(
            filter=widgets.ToggleButtons(options=["statistics", "parametric", "none"], value=s.filter),
            alpha=widgets.FloatLogSlider(value=s.alpha, base=10, min=0.02, max=2, step=0.02, description="α"),
            r=widgets.FloatSlider(value=s.r, min=0.02, max=0.7, step=0.02, description="r / H"),
            lam=widgets.FloatLogSlider(value=s.lam, base=10, min=-1, max=1, step=0.05, description="λ"),
            centre=widgets.ToggleButtons(options=["paper", "dc"], value=s.centre),
            T=widgets.IntSlider(value=s.T, min=2, max=100, step=1, description="T"),
            sampler=widgets.Dropdown(options=list(SAMPLER_CHOICES), value=s.sampler),
            seed=widgets.IntSlider(value=s.seed, min=0, max=20, description="seed"),
        )

        def redraw(**values):
            self.figure(replace(s, **values))
            plt.show()

        return widgets.interactive(redraw, **controls)
