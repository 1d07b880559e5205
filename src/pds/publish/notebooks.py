"""Running the notebooks with papermill, and the helpers the notebooks share.

Profiles: ``smoke`` (CI, seconds to a minute per notebook), ``default`` (a CPU laptop, embedded
data and models, minutes) and ``full`` (a GPU with the official checkpoints). Each notebook has a
cell tagged ``parameters`` that sets ``profile``; papermill injects the chosen one.

Command line (what ``make notebooks`` and the notebook tests call)::

    python -m pds.publish.notebooks --profile default --out build/notebooks/default [NAME ...]

Executed copies go to ``--out`` (git-ignored); the runner shows, per notebook, a bar of executed cells with
the elapsed time. Where figures go is decided by the notebook itself from its ``profile`` (:func:`save_figure`),
so a notebook run directly with papermill behaves the same: ``smoke`` writes to
``build/notebooks/smoke/figures/`` and never over the shipped ``figures/``; ``default`` and ``full`` write
``figures/``. ``$PDS_FIGURE_DIR`` overrides the folder, except that smoke never writes into ``figures/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pds.lab.verdicts import spread
from pds.storage import BUILD_DIR, FIGURES_DIR, NOTEBOOK_DIR, REPO_ROOT, check_output

__all__ = ["PROFILES", "choose", "check", "check_choices", "check_verdict", "figure_dir", "save_figure", "steady",
           "code_cells", "list_notebooks", "run_notebook", "REPO_ROOT"]

PROFILES = ("smoke", "default", "full")
KERNEL_NAME = "pds"
FIGURE_ENV = "PDS_FIGURE_DIR"


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")


def choose(profile: str, **per_profile):
    """Pick the setting for ``profile`` from ``smoke=..., default=..., full=...``.

    A missing ``full`` falls back to ``default``. Unknown profiles are refused.
    """
    check_profile(profile)
    if profile in per_profile:
        return per_profile[profile]
    if profile == "full" and "default" in per_profile:
        return per_profile["default"]
    raise KeyError(f"no setting given for profile {profile!r}")


def check_choices(name: str, values, allowed) -> list:
    """Refuse a notebook parameter holding names outside ``allowed`` (the message lists the valid ones)."""
    values = [values] if isinstance(values, str) else list(values)
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise ValueError(f"parameter {name} = {values!r}: {'unknown ' + repr(unknown) if unknown else 'empty'}; "
                         f"valid names: {list(allowed)}")
    return values


def figure_dir(profile: str) -> Path:
    """Where a notebook of ``profile`` saves figures (see the module docstring); created if needed."""
    check_profile(profile)
    smoke_dir = BUILD_DIR / "notebooks" / "smoke" / "figures"
    if os.environ.get(FIGURE_ENV):
        d = Path(os.environ[FIGURE_ENV])
        if profile == "smoke" and d.resolve() == FIGURES_DIR.resolve():
            d = smoke_dir
    else:
        d = smoke_dir if profile == "smoke" else FIGURES_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_figure(fig, name: str, profile: str, dpi: int = 120) -> Path:
    """Save a matplotlib figure as ``<figure_dir(profile)>/<name>.png`` and return the path."""
    path = figure_dir(profile) / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def steady(values, digits: int = 10):
    """``values`` (an array or tensor) as a float64 numpy array rounded to ``digits`` significant digits: a figure drawn
    from them has the same bytes on a CPU whose float kernels round otherwise in the last bits (a line's end a pixel
    over changes the PNG)."""
    import numpy as np

    a = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(a))))
        out = np.round(a * scale) / scale
    return np.where(np.isfinite(out) & (a != 0), out, a)


def check(name: str, value: float, bound: float, kind: str = "<=", enforce: bool = True) -> float:
    """Print a measured number next to its tolerance and raise if it is outside.

    ``kind`` is "<=" (value must not exceed bound) or ">=" (value must reach bound). ``enforce=False`` prints the
    same line without raising: for wall-clock timings in the smoke profile, which runs inside the test suite on a
    shared machine (speed is asserted nowhere in the tests; see ``benchmarks/``).
    """
    if kind not in ("<=", ">="):
        raise ValueError(f"kind must be '<=' or '>=', got {kind!r}")
    ok = value <= bound if kind == "<=" else value >= bound
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {value:.4g}  (required {kind} {bound:.4g})"
          + ("" if enforce else " (not asserted)"))
    if not ok and enforce:
        raise AssertionError(f"{name} = {value:.6g} violates {kind} {bound:.6g}")
    return value


def check_verdict(verdict, expected: bool = True):
    """Print a :class:`pds.lab.experiments.Verdict` and raise if it is not the finding the notebook states
    (``expected``): a notebook fails when a finding it prints no longer holds."""
    ok = verdict.holds == expected
    print(f"{'PASS' if ok else 'FAIL'}  {verdict}")
    if not ok:
        raise AssertionError(f"finding changed: expected the claim to {'hold' if expected else 'fail'}: {verdict}")
    return verdict


def plot_fig6_grid(fd, contrast, r_values, lam_values, vanilla, data_contrast: float, title: str):
    """Fig. 6's grid as two heatmaps (seaborn): left the FD of each (r, λ) on a log scale centred on vanilla's mean
    FD at the same T (``vanilla``: its values over seeds), right the samples' contrast relative to the data's.
    Returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    fd = np.asarray(fd, dtype=np.float64)
    van_mean, van_std, _ = spread(vanilla)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    labels = dict(xticklabels=[f"{v:g}" for v in lam_values], yticklabels=[f"{v:g}H" for v in r_values])
    sns.heatmap(np.log10(fd), ax=axes[0], annot=np.round(fd).astype(int), fmt="d", cmap="RdYlGn_r",
                center=np.log10(van_mean), **labels, cbar_kws={"label": "log10 FD"})
    axes[0].set(title=f"{title} (vanilla {van_mean:.0f} ± {van_std:.0f})", xlabel="λ", ylabel="r")
    sns.heatmap(np.asarray(contrast) / data_contrast, ax=axes[1], annot=True, fmt=".2f", cmap="viridis", **labels,
                cbar_kws={"label": "contrast / data contrast"})
    axes[1].set(title="sample contrast relative to the data", xlabel="λ", ylabel="r")
    return fig


def code_cells(path) -> list[str]:
    """The sources of a notebook file's code cells, read as JSON (nbformat's validation costs a second per notebook):
    what a rendered page must show and what a notebook's findings record the digest of."""
    cells = json.loads(Path(path).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def list_notebooks(names=None) -> list[Path]:
    """The notebooks in order (``notebooks/NN_*.ipynb``), optionally only those matching ``names``."""
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if names:
        wanted = []
        for name in names:
            hits = [b for b in books if b.stem == Path(name).stem or b.name.startswith(name)]
            if not hits:
                raise FileNotFoundError(f"no notebook matches {name!r} in {NOTEBOOK_DIR}; "
                                        f"known: {[b.stem for b in books]}")
            wanted.extend(hits)
        books = wanted
    return books


def kernel_name() -> str:
    """The registered 'pds' kernel when present (``make setup`` registers it), else 'python3'."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if KERNEL_NAME in KernelSpecManager().find_kernel_specs():
            return KERNEL_NAME
    except Exception:  # pragma: no cover - jupyter_client missing or broken
        pass
    return "python3"


def run_notebook(path: Path, profile: str, out_dir: Path, timeout: int | None = None,
                 extra_parameters: dict | None = None, progress: bool = False) -> Path:
    """Execute one notebook with papermill in ``profile``; return the executed copy's path.

    A failing cell raises ``papermill.PapermillExecutionError``; the executed copy (with the
    traceback in it) is kept in ``out_dir`` for reading. ``progress`` shows a bar of executed cells.
    """
    import papermill

    check_profile(profile)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    params = {"profile": profile, **(extra_parameters or {})}
    bar = {"desc": f"[{profile}] {path.stem}", "mininterval": 2.0} if progress else False
    papermill.execute_notebook(
        str(path), str(out), parameters=params, kernel_name=kernel_name(),
        cwd=str(path.parent), progress_bar=bar, execution_timeout=timeout,
    )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pds.publish.notebooks", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all, in order)")
    parser.add_argument("--profile", default="default", choices=PROFILES)
    parser.add_argument("--out", default=None, help="folder for executed copies")
    args = parser.parse_args(argv)
    out = Path(args.out or BUILD_DIR / "notebooks" / args.profile)
    failures = []
    try:
        books = list_notebooks(args.names)
        check_output(out, "--out", folder=True)
    except (FileNotFoundError, ValueError) as exc:
        print(f"python -m pds.publish.notebooks: error: {exc}", file=sys.stderr)
        return 2
    start_all, times = time.perf_counter(), {}
    for k, book in enumerate(books, start=1):
        start = time.perf_counter()
        print(f"[{args.profile}] notebook {k}/{len(books)}: {book.name}", flush=True)
        try:
            run_notebook(book, args.profile, out, progress=True)
        except Exception as exc:  # keep going, report at the end
            failures.append(book.name)
            detail = f"{getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', exc)}"
            times[book.stem] = (time.perf_counter() - start, "FAILED")
            print(f"  FAILED after {times[book.stem][0]:.1f} s: {detail}", flush=True)
            print(f"  executed copy: {out / book.name}", flush=True)
            continue
        times[book.stem] = (time.perf_counter() - start, "")
        print(f"  done in {times[book.stem][0]:.1f} s -> {out / book.name}", flush=True)
    print(f"[{args.profile}] seconds per notebook:", flush=True)
    for name, (seconds, status) in times.items():
        print(f"  {seconds:7.1f}  {name} {status}".rstrip(), flush=True)
    print(f"[{args.profile}] {len(books) - len(failures)}/{len(books)} notebooks in "
          f"{time.perf_counter() - start_all:.0f} s", flush=True)
    if failures:
        print(f"{len(failures)} notebook(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
