"""pds.lab.store: results found again by their description, by key or within the fingerprints' tolerances; shipped
copies read; a cut line skipped."""

from __future__ import annotations

import json

from pds.fingerprint import RTOL, fingerprint
from pds.lab.store import Store


def boundary_pair():
    """Two fingerprints within tolerance whose ids differ: a number at a rounding boundary of the id's digits."""
    a, b = fingerprint(1.2345678500000000), fingerprint(1.2345678500000000 * (1 + 0.2 * RTOL))
    if a.id == b.id:  # the rounding went the same way: move to the other side of the boundary
        b = fingerprint(1.23456785 * (1 - 0.2 * RTOL))
    return a, b


def test_found_by_key_and_within_tolerance(tmp_path):
    a, b = boundary_pair()
    assert a.same(b) and a.id != b.id
    store = Store(tmp_path, name="things")
    calls = []
    row = store.get_or_compute({"what": "x", "code": a, "n": 3}, lambda: calls.append(1) or {"value": 7})
    assert row["value"] == 7 and calls == [1] and "wall_s" in row
    again = Store(tmp_path, name="things")  # a new process: read from the folder
    assert again.find({"what": "x", "code": a, "n": 3})["key"] == row["key"]
    assert again.find({"what": "x", "code": b, "n": 3})["key"] == row["key"]  # another id, the same behaviour
    assert again.find({"what": "x", "code": a, "n": 4}) is None
    assert again.find({"what": "x", "code": fingerprint(1.3), "n": 3}) is None
    assert again.get_or_compute({"what": "x", "code": b, "n": 3}, lambda: calls.append(2) or {}) == row
    assert calls == [1]


def test_shipped_rows_are_read_and_merged(tmp_path):
    runs = Store(tmp_path / "runs", name="t")
    runs.add({"i": 1, "f": fingerprint(1.0)}, value=1)
    assert runs.ship(tmp_path / "shipped") == 1
    other = Store(tmp_path / "runs2", name="t")
    other.add({"i": 2, "f": fingerprint(2.0)}, value=2)
    assert other.ship(tmp_path / "shipped") == 2  # merged with what is there
    reader = Store(tmp_path / "fresh", shipped=tmp_path / "shipped", name="t")
    assert reader.find({"i": 1, "f": fingerprint(1.0)})["value"] == 1
    assert reader.find({"i": 2, "f": fingerprint(2.0)})["value"] == 2
    fps = [json.loads(line)["id"] for line in (tmp_path / "shipped" / "fingerprints.jsonl").read_text().splitlines()]
    assert sorted(fps) == sorted([fingerprint(1.0).id, fingerprint(2.0).id])


def test_a_line_cut_by_a_kill_is_skipped(tmp_path):
    store = Store(tmp_path, name="t")
    store.add({"i": 1}, value=1)
    with open(tmp_path / "t.jsonl", "a") as f:
        f.write('{"key": "abc", "descr')  # a kill in the middle of a write
    again = Store(tmp_path, name="t")
    assert again.find({"i": 1})["value"] == 1 and len(again.rows()) == 1
    again.add({"i": 2}, value=2)  # appended after a newline: both readable
    assert len(Store(tmp_path, name="t").rows()) == 2


def test_a_row_another_process_appends_is_seen_and_usable_filters(tmp_path):
    """Two sweeps share a folder: a row the other appended is found without reopening; ``usable`` can refuse a row
    (the result cache refuses one whose samples file is missing), and a row of this folder replaces a shipped one."""
    mine, other = Store(tmp_path / "a", name="things"), Store(tmp_path / "a", name="things")
    row = other.add({"what": "y"}, value=1)
    assert mine.row(row["key"]) == row and mine.find({"what": "y"})["key"] == row["key"]
    assert mine.versions(row["key"])[0][1] == tmp_path / "a"
    assert mine.find({"what": "y"}, usable=lambda r, folder: False) is None
    shipped = Store(tmp_path / "s", name="things")
    shipped.add({"what": "z"}, value=1)
    local = Store(tmp_path / "l", shipped=tmp_path / "s", name="things")
    assert local.versions(local.find({"what": "z"})["key"])[0][1] == tmp_path / "s"
    local.add({"what": "z"}, value=2)
    assert local.find({"what": "z"})["value"] == 2 and len(local.rows()) == 1


def test_the_result_caches_legacy_rows_are_re_laid_with_their_keys(tmp_path):
    """Rows written before the result cache was a Store (the description's parts at the top level) are re-laid on
    first use, keys unchanged, and found by their descriptions."""
    from pds.lab.cache import DESCRIPTION, ResultCache, description_of, run_key

    desc = {"model": {"kind": "ncsn"}, "method": {"filter": None}, "T": 3, "n": 2, "seed": 0, "batch_size": 500,
            "device": "cpu", "fingerprints": {"sampling": "s", "network": "n", "metric": "m"}}
    legacy = {"key": run_key(desc), "name": "toy", **desc, "label": "vanilla", "value": 1.5}
    (tmp_path / "results.jsonl").write_text(json.dumps(legacy) + "\n")
    (tmp_path / f"{legacy['key']}.npz").write_bytes(b"")
    cache = ResultCache(tmp_path)
    stored = json.loads((tmp_path / "results.jsonl").read_text())
    assert stored["description"] == desc and not set(DESCRIPTION) & set(stored) - {"description"}
    assert cache.find(desc) == legacy and description_of(cache.get(legacy["key"])) == desc


def test_a_local_row_that_cannot_serve_does_not_hide_the_shipped_one(tmp_path):
    """The result cache serves a run only with its samples: a local row of a key whose samples file is missing must
    not hide the shipped row of that key that has one (nor a shipped row that matches within tolerance)."""
    shipped = Store(tmp_path / "s", name="things")
    row = shipped.add({"what": "w"}, where="shipped")
    local = Store(tmp_path / "l", shipped=tmp_path / "s", name="things")
    local.add({"what": "w"}, where="local")
    assert local.row(row["key"])["where"] == "local" and len(local.versions(row["key"])) == 2
    found = local.find({"what": "w"}, usable=lambda r, folder: folder == tmp_path / "s")
    assert found["where"] == "shipped" and local.find({"what": "w"})["where"] == "local"


def test_legacy_re_laying_keeps_lines_it_cannot_re_lay(tmp_path):
    from pds.lab.cache import relay_legacy, run_key

    desc = {"model": {}, "method": {}, "T": 1, "n": 1, "seed": 0, "batch_size": 1, "device": "cpu",
            "fingerprints": {}}
    partial = {"key": "abc", "T": 1}  # a legacy row without the rest of its description
    (tmp_path / "results.jsonl").write_text(json.dumps({"key": run_key(desc), **desc}) + "\n" + json.dumps(partial)
                                            + "\n")
    assert relay_legacy(tmp_path) == 1
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert lines[0]["description"] == desc and lines[1] == partial
