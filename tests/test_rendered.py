"""pds.publish.rendered: the committed Markdown pages of the executed notebooks show the code of notebooks/ (not stale),
a page is a pure function of a notebook's cells and outputs (no times, execution counts, stderr or widget state), saved
figures are linked to figures/ and other images written once, links between notebooks open their pages."""

from __future__ import annotations

import base64
import json

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from pds.publish import rendered
from pds.publish.notebooks import list_notebooks

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really an image").decode()


def executed(count=1, start="2026-12-06T17:00:00"):
    code = new_code_cell('fig = plot()\nsave_figure(fig, "07_demo", profile)\nprint("W2 0.0714")',
                         execution_count=count)
    code.outputs = [new_output("stream", name="stdout", text="W2 0.0714\n"),
                    new_output("stream", name="stderr", text="100%|██████████| 30/30 [00:03<00:00]\n"),
                    new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]
    other = new_code_cell("show()\nwidget", execution_count=count + 1)
    other.outputs = [new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
                     new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "ab"},
                                                      "text/plain": "VBox(children=(...))"}),
                     new_output("execute_result", data={"text/plain": "   T  W2\n0  50  0.07"}, execution_count=3)]
    injected = new_code_cell("# Parameters\nprofile = \"default\"\n", metadata={"tags": ["injected-parameters"]})
    nb = new_notebook(cells=[new_markdown_cell("# Demo\nSee [03](03_exact_gaussian_benchmark.ipynb)."), injected, code,
                             other])
    nb.metadata["papermill"] = {"start_time": start, "end_time": start, "duration": 3.2}
    return nb


def test_a_page_shows_outputs_and_no_run_to_run_metadata():
    page, images = rendered.render(executed(), "07_demo")
    assert "```python\nfig = plot()" in page and "```text\nW2 0.0714\n```" in page
    assert "![07_demo](../figures/07_demo.png)" in page  # saved: linked to the committed figure
    assert list(images) == ["07_demo_3_0.png"] and images["07_demo_3_0.png"].startswith(b"\x89PNG")
    assert "![07_demo_3_0.png](figures/07_demo_3_0.png)" in page
    assert "*Parameters of this run (papermill):* `profile = \"default\"`" in page and page.count("```python") == 2
    assert "open the notebook in JupyterLab" in page and "VBox" not in page
    assert "   T  W2\n0  50  0.07" in page and "00:03" not in page and "2026-12-06" not in page
    assert "(03_exact_gaussian_benchmark.md)" in page and ".ipynb)" not in page
    again, _ = rendered.render(executed(count=17, start="2030-01-01T00:00:00"), "07_demo")
    assert again == page  # another run's counts and times: the same bytes


def test_build_writes_pages_and_images_and_removes_orphans(tmp_path):
    src, out = tmp_path / "executed", tmp_path / "rendered"
    src.mkdir()
    name = list_notebooks()[0].name
    nbformat.write(executed(), src / name)
    (out / "figures").mkdir(parents=True)
    orphan = out / "figures" / f"{name[:-6]}_9_0.png"
    orphan.write_bytes(b"old")
    done = rendered.build(src, out)
    assert done["written"] == [name[:-6]] and len(done["missing"]) == len(list_notebooks()) - 1
    assert (out / f"{name[:-6]}.md").exists() and (out / "figures" / f"{name[:-6]}_3_0.png").exists()
    assert not orphan.exists()


def test_a_page_whose_code_differs_from_its_notebook_is_stale(tmp_path):
    for source in list_notebooks():  # pages rendered from the sources themselves (no outputs) are current
        page, _ = rendered.render(nbformat.from_dict(json.loads(source.read_text())), source.stem)
        (tmp_path / f"{source.stem}.md").write_text(page)
    assert rendered.stale(tmp_path) == []
    first = list_notebooks()[0]
    page = tmp_path / f"{first.stem}.md"
    page.write_text(page.read_text().replace("```python\n", "```python\n# edited\n", 1))
    (tmp_path / f"{list_notebooks()[1].stem}.md").unlink()
    lines = rendered.stale(tmp_path)
    assert len(lines) == 2 and "other code" in lines[0] and "no rendered page" in lines[1]


def test_the_committed_pages_show_the_code_of_the_notebooks():
    """make rendered after a notebook changes: otherwise this fails, naming the stale pages."""
    assert rendered.stale() == []
