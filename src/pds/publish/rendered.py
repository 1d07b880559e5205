"""Rendered notebooks: the executed notebooks of the default profile as Markdown pages in ``rendered/``, committed, so
that a reader browsing the repository sees every output and figure without running anything.

``python -m pds.publish.rendered`` (``make rendered``, after ``make notebooks``) writes ``rendered/<name>.md`` for every
notebook executed in ``build/notebooks/default/``: the markdown cells as they are, each code cell in a fenced block,
then its outputs — printed text and tables as text (``text/plain``), figures as images. A figure the cell saved with
:func:`pds.publish.notebooks.save_figure` under a literal name is linked to ``figures/<name>.png`` (committed already);
any other is written once under ``rendered/figures/``. What varies from run to run and says nothing about the results is
left out: papermill's times and kernel metadata, execution counts, stderr (progress bars, warnings) and the live widgets
(a line says to open the notebook in JupyterLab for them). So rendering the same executed notebook gives the same bytes,
and re-running ``make notebooks`` then ``make rendered`` on one machine changes nothing in git unless a result changed
(notebook 08's timings do, as its figures do). ``--check`` says which pages are stale: their code no longer that of
``notebooks/``.

Why not nbconvert's Markdown exporter: it writes every image as a new file named by cell position, and keeps widget
and HTML outputs (pandas' HTML tables carry a style block that GitHub shows as text); the page here is ten lines of
assembly over nbformat.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
from pathlib import Path

import nbformat

from pds.publish.notebooks import code_cells, list_notebooks
from pds.storage import BUILD_DIR, REPO_ROOT

__all__ = ["render", "build", "stale", "RENDERED_DIR"]

RENDERED_DIR = REPO_ROOT / "rendered"
SAVED = re.compile(r"""save_figure\(\s*\w+\s*,\s*["']([^"'{}]+)["']""")  # a literal figure name
WIDGET = "application/vnd.jupyter.widget-view+json"


def _text(value) -> str:
    """A notebook string as stored on disk (a list of lines) or as nbformat.read gives it (one string)."""
    return value if isinstance(value, str) else "".join(value)


def render(nb, name: str) -> tuple[str, dict[str, bytes]]:
    """The Markdown page of an executed notebook ``nb`` (a notebook node) named ``name``, and the images it needs
    written under ``rendered/figures/`` ({file name: PNG bytes}). A pure function of the notebook's cells and
    outputs."""
    parts, images = [f"<!-- rendered from notebooks/{name}.ipynb, executed in the default profile: "
                     "python -m pds.publish.rendered -->\n"], {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":  # a link to another notebook opens its page
            parts.append(re.sub(r"\]\((\d\d_\w+)\.ipynb", r"](\1.md", _text(cell.source).strip("\n")) + "\n")
            continue
        if cell.cell_type != "code":
            continue
        source = _text(cell.source)
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):  # papermill's, not the notebook's code
            parts.append("*Parameters of this run (papermill):* `" + "; ".join(
                line for line in source.splitlines() if line and not line.startswith("#")) + "`\n")
            continue
        parts.append("```python\n" + source.strip("\n") + "\n```\n")
        saved = SAVED.findall(source)
        shown = 0
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream" and out.get("name") == "stdout":
                parts.append("```text\n" + _text(out["text"]).rstrip("\n") + "\n```\n")
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                if WIDGET in data:
                    parts.append("*(interactive controls here: open the notebook in JupyterLab, `make lab`)*\n")
                elif "image/png" in data:
                    if shown < len(saved):
                        parts.append(f"![{saved[shown]}](../figures/{saved[shown]}.png)\n")
                    else:
                        file = f"{name}_{index}_{shown}.png"
                        images[file] = base64.b64decode(_text(data["image/png"]))
                        parts.append(f"![{file}](figures/{file})\n")
                    shown += 1
                elif "text/plain" in data:
                    parts.append("```text\n" + _text(data["text/plain"]).rstrip("\n") + "\n```\n")
            elif kind == "error":
                parts.append("```text\n" + f"{out['ename']}: {out['evalue']}" + "\n```\n")
    return "\n".join(parts), images


def build(src=None, out=None) -> dict:
    """Render every executed notebook of ``src`` (default ``build/notebooks/default/``) into ``out`` (default
    ``rendered/``); pages of notebooks not executed are left as they are. Returns {"written": [...], "missing":
    [...]}."""
    src = Path(src) if src else BUILD_DIR / "notebooks" / "default"
    out = Path(out) if out else RENDERED_DIR
    (out / "figures").mkdir(parents=True, exist_ok=True)
    written, missing = [], []
    for source in list_notebooks():
        executed = src / source.name
        if not executed.exists():
            missing.append(source.stem)
            continue
        page, images = render(nbformat.read(executed, as_version=4), source.stem)
        for old in (out / "figures").glob(f"{source.stem}_*.png"):
            if old.name not in images:
                old.unlink()
        for file, data in images.items():
            path = out / "figures" / file
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
        (out / f"{source.stem}.md").write_text(page)
        written.append(source.stem)
    return {"written": written, "missing": missing}


def stale(folder=None) -> list[str]:
    """The notebooks whose rendered page is missing or whose code differs from ``notebooks/`` (one line each)."""
    folder = Path(folder) if folder else RENDERED_DIR
    lines = []
    for source in list_notebooks():
        page = folder / f"{source.stem}.md"
        if not page.exists():
            lines.append(f"{source.stem}: no rendered page ({page})")
            continue
        blocks = re.findall(r"```python\n(.*?)\n```\n", page.read_text(), flags=re.S)
        if blocks != [code.strip("\n") for code in code_cells(source)]:
            lines.append(f"{source.stem}: its rendered page shows other code than notebooks/{source.name}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pds.publish.rendered", description="render the executed notebooks "
                                     "of the default profile as Markdown pages in rendered/")
    parser.add_argument("--check", action="store_true", help="only say which rendered pages are stale (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        lines = stale()
        for line in lines:
            print("stale:", line, file=sys.stderr)
        if lines:
            print("(run the notebooks, then 'make rendered')", file=sys.stderr)
        return 1 if lines else 0
    done = build()
    print(f"{RENDERED_DIR}: {len(done['written'])} pages" + (f"; not executed, left as they were: "
                                                              f"{', '.join(done['missing'])} (make notebooks)"
                                                              if done["missing"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
