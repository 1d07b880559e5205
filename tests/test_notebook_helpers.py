from __future__ import annotations

import pytest

from pds.publish.notebooks import check, choose, figure_dir, list_notebooks, save_figure


def test_choose():
    assert choose("smoke", smoke=1, default=2) == 1
    assert choose("full", smoke=1, default=2) == 2  # full falls back to default
    with pytest.raises(ValueError, match="unknown profile"):
        choose("fast", smoke=1)
    with pytest.raises(KeyError):
        choose("smoke", default=2)


def test_check_passes_and_fails(capsys):
    assert check("x", 1.0, 2.0) == 1.0
    with pytest.raises(AssertionError, match="violates"):
        check("x", 3.0, 2.0)
    with pytest.raises(AssertionError):
        check("y", 1.0, 2.0, ">=")
    assert "PASS  x" in capsys.readouterr().out
    assert check("z", 3.0, 2.0, enforce=False) == 3.0  # printed as failing, not raised
    assert "FAIL  z: 3  (required <= 2) (not asserted)" in capsys.readouterr().out


def test_figures_go_to_env_dir(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("PDS_FIGURE_DIR", str(tmp_path / "figs"))
    assert figure_dir("default") == tmp_path / "figs"
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert save_figure(fig, "test", "default").exists()
    plt.close(fig)


def test_list_notebooks_unknown_name():
    with pytest.raises(FileNotFoundError):
        list_notebooks(["99_nothing"])


def test_smoke_never_writes_the_shipped_figures(monkeypatch):
    from pds.storage import BUILD_DIR, FIGURES_DIR

    monkeypatch.delenv("PDS_FIGURE_DIR", raising=False)
    assert figure_dir("smoke") == BUILD_DIR / "notebooks" / "smoke" / "figures"
    assert figure_dir("default") == FIGURES_DIR
    monkeypatch.setenv("PDS_FIGURE_DIR", str(FIGURES_DIR))
    assert figure_dir("smoke") != FIGURES_DIR
    with pytest.raises(ValueError, match="unknown profile"):
        figure_dir("fast")


def test_check_choices_lists_the_valid_names():
    from pds.publish.notebooks import check_choices

    assert check_choices("models_to_run", ["ncsn"], ["ncsn", "ncsnpp"]) == ["ncsn"]
    assert check_choices("models_to_run", "ncsnpp", ["ncsn", "ncsnpp"]) == ["ncsnpp"]
    with pytest.raises(ValueError, match=r"unknown \['ncsn\+\+'\]; valid names: \['ncsn', 'ncsnpp'\]"):
        check_choices("models_to_run", ["ncsn++"], ["ncsn", "ncsnpp"])
    with pytest.raises(ValueError, match="empty"):
        check_choices("models_to_run", [], ["ncsn"])


def test_the_learning_path_places_the_mechanism_right_after_notebook_03(tmp_path):
    """Notebook 14 (why PDS works) is read after 01 and 03: its metadata names 03 ("after"), and the book's index
    lists it right there; every notebook appears once."""
    from pds.publish.book import learning_path

    order = [step["source"].stem for step in learning_path(tmp_path)]
    assert sorted(order) == sorted(p.stem for p in list_notebooks())
    at = order.index("03_exact_gaussian_benchmark")
    assert order[at + 1] == "14_why_pds_works"
    step = next(s for s in learning_path(tmp_path) if s["source"].stem == "14_why_pds_works")
    assert step["read_first"] == ["01_fokker_planck_invariance", "03_exact_gaussian_benchmark"]


def test_steady_values_draw_the_same_figure_after_last_bit_changes():
    import numpy as np
    import torch

    from pds.publish.notebooks import steady

    a = np.array([1.2345678901234, -3.3e-7, 2.5e8, 0.0, np.inf, np.nan])
    nudged = a * (1 + 4e-16)
    assert np.array_equal(steady(a)[:4], steady(nudged)[:4])
    assert np.array_equal(steady(torch.tensor(a))[:4], steady(a)[:4])
    assert steady(a)[3] == 0.0 and np.isinf(steady(a)[4]) and np.isnan(steady(a)[5])
    assert np.allclose(steady(a)[:3], a[:3], rtol=1e-9, atol=0) and not np.array_equal(steady(a)[:1], a[:1])
