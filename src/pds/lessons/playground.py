"""Playgrounds for PDS (notebook 00).

:class:`GaussianPlayground` — what PDS is for: vanilla and a chosen filter side by side at the same T on the exact
Gaussian with the spectrum of photograph crops (notebooks 03, 12 and 14's 32² target), where vanilla fails at few
steps. Per state it computes, exactly (:func:`pds.exact.pc_exact`, no sampling), the output's variance over the
target's per ring of |k| and the relative W2 of each, and draws samples of both from their exact output laws with the
same white noise. Presets: vanilla,
the paper's R (α), the parametric filter (r, λ), P ∝ Σ (section 2's fix, scaled to gain 1 at its largest), notebook 12's
optimum (where it searched that budget) and notebook 14's rule. ≤ 0.3 s per change (``benchmarks/playground.py``).

:class:`Playground` — the exact score of a small image set (no model error), where an exact sampler returns training
images and vanilla lands in few steps: nothing for PDS to accelerate. Each change redraws, in well under a second on
a CPU: the multiplier the sampler applies to the noise per frequency (centred, DC in the middle), one noise draw
η = M⁻¹ξ with that filter on a fixed scale, and samples from the exact score of the set
(:class:`pds.empirical.EmpiricalScore`) with the chosen sampler in T steps, each with its Euclidean distance to the
nearest training image (pixels in [0, 1]). The filter is the statistics R of Eq. 14 (normalised by α as
released), the parametric (r, λ) filter of Sec. 4.3 in either reading, or none (vanilla).

Under papermill and in the book the widgets do not run: :meth:`GaussianPlayground.show` draws the default state as a
static figure first, then adds the sliders where a live kernel displays them. ipywidgets is imported only there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from types import SimpleNamespace

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from pds.configs import experiment as experiment_named
from pds.exact import pc_exact
from pds.filters import parametric_preconditioner
from pds.fourier import centred
from pds.lab.experiments import Method, crop_and_clip, draw
from pds.lab.image_sets import ImageSet, exact_model
from pds.lab.optima import OptimumStore
from pds.lessons import mechanism
from pds.precondition import Preconditioner
from pds.samplers import SAMPLERS
from pds.storage import DATA_DIR, RUNS_DIR

__all__ = ["State", "Playground", "SAMPLER_CHOICES", "GaussianState", "GaussianPlayground", "PRESETS"]

# The filters of the Gaussian playground, and the controls that act on each.
PRESETS = {"vanilla": (), "R": ("alpha",), "parametric": ("r", "lam", "alpha"), "P ∝ Σ": (),
           "optimum (notebook 12)": (), "rule (notebook 14)": ()}
ETA_RANGE = 3.5  # the η panel's fixed grey scale, ±: a unit white draw mostly lies inside it
GAIN_RANGE = (1 / 8, 8)  # the drift-gain panel's fixed (log) colour scale
GAIN_TICKS = (0.125, 0.5, 1, 2, 8)
RATIO_RANGE = (0.2, 5)  # the v/s plot's fixed (log) axis
RATIO_TICKS = (0.25, 0.5, 1, 2, 4)
T_MAX = 200  # the T slider's end: each change stays within 0.3 s


@dataclass(frozen=True)
class GaussianState:
    """One setting of :class:`GaussianPlayground`: ``preset`` one of :data:`PRESETS` (the filter compared with
    vanilla); ``alpha`` R's and the parametric filter's normalisation; ``r`` (in units of H) and ``lam`` the
    parametric filter's radius and slope; ``T`` the PC sampler's iterations (NFE 2T); ``snr`` the corrector's
    signal-to-noise ratio (its step ε = 2(snr‖η‖/‖g‖)²); ``seed`` the noise of the samples and of η."""

    preset: str = "R"
    alpha: float = 5.0
    r: float = 0.2
    lam: float = 1.6
    T: int = 50
    snr: float = 0.16
    seed: int = 0

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"GaussianState(preset={self.preset!r}): unknown preset; choose one of {list(PRESETS)}")
        for name, value, ok, rule in (("alpha", self.alpha, self.alpha > 1, "a number > 1"),
                                      ("r", self.r, self.r > 0, "a number > 0"),
                                      ("lam", self.lam, self.lam > 0, "a number > 0"),
                                      ("T", self.T, int(self.T) == self.T and self.T >= 1, "an integer >= 1"),
                                      ("snr", self.snr, self.snr > 0, "a number > 0")):
            if not ok:
                raise ValueError(f"GaussianState({name}={value!r}): {name} must be {rule}")

    def label(self) -> str:
        """The filter's name with its parameters."""
        if self.preset == "R":
            return f"R (α = {self.alpha:g})"
        if self.preset == "parametric":
            return f"parametric (r = {self.r:g}H, λ = {self.lam:g}, α = {self.alpha:g})"
        return self.preset

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
        return Method("parametric", r=self.r, lam=self.lam, centre=self.centre, sampler=self.sampler)


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
        label = state.method().label
        im = axes[0].imshow(centred(gain).numpy(), cmap="magma")
        fig.colorbar(im, ax=axes[0], fraction=0.046)
        axes[0].set_title(f"noise multiplier 1/R̃ of\n{label} (DC centred)", fontsize=7)
        axes[1].imshow(eta[0, 0].numpy(), cmap="gray", vmin=-ETA_RANGE, vmax=ETA_RANGE)
        axes[1].set_title(f"η = M⁻¹ξ (grey ±{ETA_RANGE})", fontsize=8)
        for i, ax in enumerate(axes[2:]):
            ax.imshow(x[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"to nearest {float(dist[i]):.2f}", fontsize=8)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{label}, T = {state.T}, NFE {nfe}; 'to nearest': Euclidean distance to the nearest training "
                     "image (pixels in [0, 1])", fontsize=8, y=1.04)
        return fig

    def widget(self, state: State | None = None):
        """The controls (ipywidgets) starting from ``state``, above the figure; the filter's controls show only for
        the filter they act on, and none for a sampler that takes no filter (euler, heun, dpmpp_2m)."""
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
        acts_on = {"statistics": ("alpha",), "parametric": ("alpha", "r", "lam", "centre"), "none": ()}

        def show_relevant(change=None):
            sampler = controls["sampler"].value
            takes_filter = SAMPLERS["pc" if sampler == "released" else sampler].preconditioned
            controls["filter"].layout.display = "" if takes_filter else "none"
            for name in ("alpha", "r", "lam", "centre"):
                shown = takes_filter and name in acts_on[controls["filter"].value]
                controls[name].layout.display = "" if shown else "none"

        for name in ("filter", "sampler"):
            controls[name].observe(show_relevant, names="value")
        show_relevant()

        def redraw(**values):
            self.figure(replace(s, **values))
            plt.show()

        return widgets.VBox([*controls.values(), widgets.interactive_output(redraw, controls)])


@functools.cache
def _cmap(name: str):
    """A colour map looked up once: matplotlib copies a registered map on every lookup by name (20 ms here)."""
    return matplotlib.colormaps[name]


class GaussianPlayground:
    """Vanilla beside a chosen filter on the exact Gaussian target of ``size``² (:func:`pds.lessons.mechanism.targets`:
    300 photograph crops' mean and spectrum) with the paper's settings for that size; ``n`` samples per method."""

    def __init__(self, size: int = 32, n: int = 3):
        self.size, self.n = int(size), int(n)
        self.target = mechanism.targets([self.size])[self.size]
        self.settings = mechanism.SETTINGS[self.size]
        self.shape = tuple(self.target.shape)
        self._store = OptimumStore(RUNS_DIR / "optimal" / "default",
                                   shipped=DATA_DIR / "results" / "optimal" / "default")
        self._exact: dict = {}
        self._budgets: list[int] | None = None

    def preconditioner(self, state: GaussianState) -> Preconditioner | None:
        """The preset's preconditioner; None for vanilla, and for notebook 12's optimum where it did not search the
        budget 2T (:meth:`optimum_budgets` lists those it did)."""
        if state.preset == "vanilla":
            return None
        if state.preset == "R":
            return mechanism.paper_R(self.target, state.alpha)
        if state.preset == "parametric":
            return parametric_preconditioner(self.shape, state.r, state.lam, alpha=state.alpha)
        if state.preset == "P ∝ Σ":  # drift gain p_k = s_k / max s: the covariance's shape, at most vanilla's gain
            return Preconditioner(freq=(self.target.spectrum / self.target.spectrum.max()).rsqrt(), alpha=None)
        if state.preset == "optimum (notebook 12)":
            return mechanism.optimum_gain(self._store, self.target, self.settings, 2 * state.T)
        return Preconditioner(freq=mechanism.rule_gain(self.target, self.settings, state.T).rsqrt(), alpha=None)

    def optimum_budgets(self) -> list[int]:
        """The NFE at which notebook 12 searched an optimum of the PC sampler on this target."""
        if self._budgets is None:
            self._budgets = [2 * t for t in range(1, T_MAX + 1)
                             if mechanism.optimum_gain(self._store, self.target, self.settings, 2 * t) is not None]
        return self._budgets

    def exact(self, state: GaussianState, pre: Preconditioner | None):
        """The exact output moments (:func:`pds.exact.pc_exact`) of the state's sampler with ``pre``, memoised."""
        key = (state.label() if pre is not None else "vanilla", state.T, state.snr)
        if key not in self._exact:
            e = self.settings
            self._exact[key] = pc_exact(self.target, e.sigma_min, e.sigma_max, e.levels, state.snr,
                                        iterations=state.T, preconditioner=pre)
        return self._exact[key]

    def samples(self, state: GaussianState, pre: Preconditioner | None) -> torch.Tensor:
        """``n`` draws from the sampler's exact output law (:meth:`pds.exact.ExactResult.sample`: per frequency the
        mean and variance :func:`pds.exact.pc_exact` computes) from the white noise of ``state.seed``, the same for
        every method: two methods' samples differ only by what their laws differ by."""
        return self.exact(state, pre).sample(self.target.mean, self.n, torch.Generator().manual_seed(state.seed))

    def figure(self, state: GaussianState):
        """Two rows, vanilla and the preset (drift gain per frequency, one noise draw η = M⁻¹ξ on a fixed scale,
        samples), and beside them the output's variance over the target's per ring of |k|, with each W2."""
        view = self.layout()
        self.update(view, state)
        return view.fig

    def layout(self) -> SimpleNamespace:
        """The figure's axes and artists, drawn once; :meth:`update` sets their data (a redraw then costs no layout)."""
        from matplotlib.colors import LogNorm

        width = 1.75 * (self.n + 2) + 4.8
        fig = plt.figure(figsize=(width, 4.4))  # fixed positions: a layout engine would cost more than the maths
        split = 1.75 * (self.n + 2) / width
        grid = fig.add_gridspec(2, self.n + 3, left=0.035, right=split - 0.01, top=0.84, bottom=0.02, wspace=0.08,
                                hspace=0.42, width_ratios=[0.07, *[1] * (self.n + 2)])
        axes = np.array([[fig.add_subplot(grid[row, col]) for col in range(1, self.n + 3)] for row in (0, 1)])
        c, h, w = self.shape
        blank = np.zeros((h, w))
        view = SimpleNamespace(fig=fig, axes=axes, plot=fig.add_axes((split + 0.07, 0.12, 0.98 - split - 0.08, 0.72)))
        view.gains = [ax.imshow(blank, cmap=_cmap("magma"), norm=LogNorm(*GAIN_RANGE)) for ax in axes[:, 0]]
        view.etas = [ax.imshow(blank, cmap=_cmap("gray"), vmin=-ETA_RANGE, vmax=ETA_RANGE) for ax in axes[:, 1]]
        view.samples = [[ax.imshow(np.zeros((h, w, c)), cmap=_cmap("gray")) for ax in row[2:]] for row in axes]
        view.lines = [view.plot.semilogy([1], [1], "o-", ms=3, color=colour)[0] for colour in ("C0", "C1")]
        view.message = fig.text(split / 2, 0.25, "", ha="center", va="center", fontsize=9)
        bar = fig.colorbar(view.gains[0], cax=fig.add_subplot(grid[:, 0]), ticks=GAIN_TICKS)
        bar.ax.yaxis.set_ticks_position("left")
        bar.ax.set_yticklabels([f"{t:g}" for t in GAIN_TICKS], fontsize=6)
        bar.ax.minorticks_off()
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        plot = view.plot
        plot.axhline(1.0, color="k", lw=0.8)
        plot.set_ylim(*RATIO_RANGE)
        plot.set_yticks(RATIO_TICKS, [f"{t:g}" for t in RATIO_TICKS])  # plain labels, no mathtext
        plot.minorticks_off()
        plot.set_xlim(0, float(np.hypot(h, w)) / 2)
        plot.set_xlabel("|k| (cycles per image)", fontsize=8)
        plot.set_ylabel("output variance / target's (1: right)", fontsize=8)
        plot.set_title("per ring of |k|, exact (DC centred in the gain panels)", fontsize=8)
        return view

    def update(self, view: SimpleNamespace, state: GaussianState) -> None:
        """Set the figure of :meth:`layout` to ``state``."""
        pre = self.preconditioner(state)
        missing = state.preset == "optimum (notebook 12)" and pre is None
        xi = torch.randn((1, *self.shape), generator=torch.Generator().manual_seed(state.seed), dtype=torch.float64)
        labels = []
        for row, (name, p) in enumerate((("vanilla", None), (state.label(), pre))):
            shown = not (missing and row == 1)
            for ax in view.axes[row]:
                ax.set_visible(shown)
            view.lines[row].set_visible(shown)
            if not shown:
                continue
            res = self.exact(state, p)
            rad = res.radial(bins=12)
            ratio = np.asarray(rad["ratio"][1:])
            label = f"{name}: relative W2 {res.w2_relative:.3g}"
            if ratio.min() < RATIO_RANGE[0] or ratio.max() > RATIO_RANGE[1]:
                label += f" (v/s {ratio.min():.2g} to {ratio.max():.2g}: clipped)"
            view.lines[row].set_data(rad["radius"][1:], ratio.clip(*RATIO_RANGE))
            labels.append((view.lines[row], label))
            gain = mechanism.drift_gain(p, self.shape)[0]
            view.gains[row].set_data(centred(gain).numpy())
            view.axes[row, 0].set_title(f"{name}\ndrift gain p_k ({float(gain.min()):.2g} to "
                                        f"{float(gain.max()):.2g})", fontsize=7)
            eta = xi if p is None else p.noise(xi)
            view.etas[row].set_data(eta[0, 0].numpy())
            view.axes[row, 1].set_title(f"η = M⁻¹ξ, red channel\n(grey ±{ETA_RANGE}; rms {float(eta.std()):.2f})",
                                        fontsize=7)
            for i, x in enumerate(self.samples(state, p)):
                view.samples[row][i].set_data(x.clamp(0, 1).permute(1, 2, 0).numpy())
                view.axes[row, 2 + i].set_title(f"{name.split(' (')[0]}: sample {i + 1}", fontsize=7)
        budgets = ", ".join(str(b) for b in self.optimum_budgets()) if missing else ""
        view.message.set_text(f"notebook 12 searched no optimum at NFE {2 * state.T};\nit searched NFE {budgets}"
                              if missing else "")
        view.plot.legend(*zip(*labels, strict=True), fontsize=7, loc="upper right")
        view.fig.suptitle(f"Exact Gaussian of {self.size}² photograph crops: PC sampler, T = {state.T} (NFE "
                          f"{2 * state.T}), snr {state.snr:g} — vanilla against {state.label()}", fontsize=9)

    def show(self, state: GaussianState | None = None, images: Playground | None = None):
        """Draw ``state`` (default: R, α = 5, T = 50) as a static figure, then add the controls below it (and, given
        ``images``, the exact-score-of-images playground in a second tab). Returns the static figure."""
        state = state or GaussianState()
        fig = self.figure(state)
        plt.show()
        import ipywidgets as widgets
        from IPython.display import display

        if images is None:
            display(self.widget(state))
        else:
            tabs = widgets.Tab(children=[self.widget(state), images.widget()])
            tabs.set_title(0, "exact Gaussian: vanilla vs PDS")
            tabs.set_title(1, "exact score of images")
            display(tabs)
        return fig

    def widget(self, state: GaussianState | None = None):
        """The controls (ipywidgets) starting from ``state``, above the figure; a control shows only for the presets
        it acts on (:data:`PRESETS`)."""
        import ipywidgets as widgets

        s = state or GaussianState()
        controls = dict(
            preset=widgets.ToggleButtons(options=list(PRESETS), value=s.preset, description="filter"),
            alpha=widgets.FloatLogSlider(value=s.alpha, base=10, min=0.02, max=2, step=0.02, description="α"),
            r=widgets.FloatSlider(value=s.r, min=0.02, max=0.7, step=0.02, description="r / H"),
            lam=widgets.FloatLogSlider(value=s.lam, base=10, min=-1, max=1, step=0.05, description="λ"),
            T=widgets.IntSlider(value=s.T, min=2, max=T_MAX, step=1, description="T"),
            snr=widgets.FloatLogSlider(value=s.snr, base=10, min=-2, max=0, step=0.05, description="snr"),
            seed=widgets.IntSlider(value=s.seed, min=0, max=20, description="seed"),
        )

        def show_relevant(change=None):
            for name in ("alpha", "r", "lam"):
                controls[name].layout.display = "" if name in PRESETS[controls["preset"].value] else "none"

        controls["preset"].observe(show_relevant, names="value")
        show_relevant()

        from IPython.display import display

        view = self.layout()
        plt.close(view.fig)  # drawn into the output below, not by the inline backend

        def redraw(**values):
            self.update(view, replace(s, **values))
            display(view.fig)

        return widgets.VBox([*controls.values(), widgets.interactive_output(redraw, controls)])
