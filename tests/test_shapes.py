"""pds.lessons.shapes (make full-shapes): the code path of the full profile at the official shapes, here at tiny
sizes."""

from __future__ import annotations

import pytest

from pds.lessons.shapes import format_table, run_all


def test_full_shapes_table_at_tiny_sizes(tmp_path):
    rows = run_all(tmp_path, tiny=True, names=["mnist_ncsn", "ffhq_ncsnpp"], iterations=2, progress=False)
    assert [r["experiment"] for r in rows] == ["mnist_ncsn", "ffhq_ncsnpp"]
    for r in rows:
        assert r["vanilla_s_per_iteration"] > 0 and r["pds_s_per_iteration"] > 0 and r["sample_shard_s"] > 0
        assert r["peak_memory_MB"] >= r["peak_above_start_MB"] >= 0 and r["batch"] == 1
    assert rows[0]["vanilla_nfe"] == 2 and rows[1]["vanilla_nfe"] == 4  # Langevin steps; PC: two evaluations each
    assert "R + A" in rows[1]["pds"]  # FFHQ: the frequency and the space filter, as Fig. 1
    table = format_table(rows).splitlines()
    assert len(table) == 4 and table[1].count("---") == table[0].count("|") - 1 and "ffhq_ncsnpp" in table[3]
    assert (tmp_path / "checkpoints" / "ncsnpp_ffhq_1024" / "checkpoint.pth").is_file()


def test_full_shapes_fails_on_any_error(tmp_path):
    with pytest.raises(RuntimeError, match="mnist_ncsn failed"):
        run_all(tmp_path, device="cuda:99", tiny=True, names=["mnist_ncsn"], progress=False)


def test_batch_memory_is_derived_from_two_batches(tmp_path):
    from pds.lessons.shapes import derive_memory, format_derived, main

    one = run_all(tmp_path, tiny=True, names=["cifar10_ncsnpp"], batch=1, progress=False)
    four = run_all(tmp_path, tiny=True, names=["cifar10_ncsnpp"], batch=4, progress=False)
    assert one[0]["sampling_peak_separate"] and one[0]["sampling_peak_MB"] <= one[0]["peak_memory_MB"]
    (d,) = derive_memory(one, four, 8)
    slope = (four[0]["sampling_peak_MB"] - one[0]["sampling_peak_MB"]) / 3
    assert d["MB_per_image"] == pytest.approx(slope)
    assert d["estimate_MB"] >= one[0]["sampling_peak_MB"] + 7 * max(slope, 0) - 1e-9
    assert "cifar10_ncsnpp" in format_derived([d])
    with pytest.raises(ValueError, match="two different batches"):
        derive_memory(one, one, 8)
    import json

    (tmp_path / "a.json").write_text(json.dumps(one))
    assert main(["--derive", str(tmp_path / "a.json"), str(tmp_path / "missing.json")]) == 2
