"""The book: the executed notebooks of a profile as a static HTML site, with the findings.

``python -m pds.publish.book --profile default`` (``make book``) converts every executed notebook in
``build/notebooks/<profile>/`` with nbconvert's HTML exporter (the JupyterLab template: markdown, code, outputs; every
figure is embedded in its page as a data URI) into ``build/book/<name>.html``, renders the findings the notebooks
wrote (:mod:`pds.publish.findings`) into ``build/book/findings.html``, and writes ``build/book/index.html`` linking them
all.
Notebooks that were not executed are listed on the index as missing, with the command that runs them.

The index is a learning path: for each notebook, what it teaches and what to read first (the notebook's own metadata,
``metadata.pds.teaches`` / ``read_first``: one home, written beside the lesson) and the minutes it took to run in this
profile (papermill's record in the executed copy). Every page opens with its contents (its sections, linked).

Why nbconvert: it is Jupyter's own converter and already in the pinned set (papermill and JupyterLab bring it), it
builds offline and the pages are self-contained. Jupyter Book 2 is a distribution of mystmd, a Node.js program that
fetches its site template when it first builds; Jupyter Book 1 would add Sphinx, myst-nb and their dependencies for
what is here a flat list of pages. Math is typeset offline by MathJax 2 from the pinned package
``jupyter-server-mathjax`` (Jupyter's own copy), copied into ``build/book/mathjax/``, with its STIX web fonts.

:func:`check_site` is what ``make test`` asserts on the smoke book: every notebook has a page, every image of every
page exists (a decodable data URI or a file in the site), every relative link resolves (anchors included).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import html
import importlib.util
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import mistune
import nbformat
from nbconvert import HTMLExporter

from pds.publish.compare import load
from pds.publish.findings import findings_dir, notebook_title, render
from pds.publish.notebooks import PROFILES, check_profile, list_notebooks
from pds.storage import BUILD_DIR

__all__ = ["build", "check_site", "learning_path", "BOOK_DIR", "MATHJAX_URL"]

BOOK_DIR = BUILD_DIR / "book"
# MathJax 2 as jupyter-server-mathjax ships it: the TeX input, the HTML-CSS output with the STIX web fonts (its only
# fonts), configured so that MathJax never asks for the TeX web fonts or image fonts it does not have.
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
MATHJAX_FONTS = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], '
                 'imageFont: null, preferredFont: null, webFont: "STIX-Web"}});</script>')

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 62rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.5; color: #222; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; vertical-align: top; }
th { background: #f3f3f3; }
code { background: #f6f6f6; padding: 0 0.2rem; }
nav { margin-bottom: 1.5rem; }
li { margin: 0.3rem 0; }
.missing { color: #a00; }
.path li { margin: 0.8rem 0; }
.meta { color: #555; font-size: 0.9rem; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _nav(current: str | None = None) -> str:
    links = [("index.html", "Contents"), ("findings.html", "Findings")]
    return "<nav>" + " · ".join(f"<a href=\"{h}\">{t}</a>" if h != current else t for h, t in links) + "</nav>"


def build(profile: str = "default", src=None, out=None) -> dict:
    """Write the book of ``profile`` (executed notebooks from ``src``, default ``build/notebooks/<profile>/``) into
    ``out`` (default ``build/book/``, replaced). Returns what was written: pages, missing notebooks, the out folder."""
    check_profile(profile)
    src = Path(src) if src else BUILD_DIR / "notebooks" / profile
    out = Path(out) if out else BOOK_DIR
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mathjax = _copy_mathjax(out)
    exporter = HTMLExporter(template_name="lab", **({"mathjax_url": MATHJAX_URL} if mathjax else {}))
    pages, missing, items = [], [], []
    for step in learning_path(src):
        source = step["source"]
        if step["executed"] is None:
            missing.append(source.stem)
            items.append(f"<li class=\"missing\">{html.escape(source.stem)}: not executed — run "
                         f"<code>PROFILE={profile} make notebooks</code></li>")
            continue
        nb = nbformat.read(step["executed"], as_version=4)
        title = notebook_title(source.stem)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
        if mathjax:
            body = body.replace("<head>", "<head>\n" + MATHJAX_FONTS, 1)
        banner = (f"<div style=\"font-family: sans-serif; padding: 0.4rem 1rem; background: #eef;\">"
                  f"<a href=\"index.html\">Contents</a> · <a href=\"findings.html#{_anchor(source.stem)}\">Findings of "
                  f"this notebook</a> · profile <code>{profile}</code> · source <code>notebooks/{source.name}</code>"
                  f"{_contents(body)}</div>")
        body = re.sub(r'href="(\d\d_\w+)\.ipynb', r'href="\1.html', body)  # a link to a notebook opens its page
        body = body.replace("<body", "<body data-pds-book=\"1\"", 1)
        at = body.index(">", body.index("<body")) + 1
        (out / f"{source.stem}.html").write_text(body[:at] + banner + body[at:])
        pages.append(source.stem)
        items.append(_path_item(step, title))
    docs = load(findings_dir(profile) if src == BUILD_DIR / "notebooks" / profile else src)
    findings_md = render(docs, profile)
    to_html = mistune.create_markdown(plugins=["table"], escape=True)
    findings_html = to_html(findings_md)
    parts = findings_html.split("<h2>")  # one h2 per notebook, in the order of docs: give each an anchor
    if len(parts) != len(docs) + 1:
        raise RuntimeError(f"the findings page has {len(parts) - 1} notebook sections for {len(docs)} notebooks")
    findings_html = parts[0] + "".join(f"<h2 id=\"{_anchor(doc['notebook'])}\">" + part
                                       for doc, part in zip(docs, parts[1:], strict=True))
    (out / "findings.html").write_text(_page(f"Findings ({profile})", _nav("findings.html") + findings_html))
    index = (f"{_nav('index.html')}<h1>pds: the notebooks ({html.escape(profile)} profile)</h1>"
             "<p>Preconditioned Diffusion Sampling (Ma, Zhang, Zhu, Feng, ECCV 2022), checked: each page is an "
             "executed notebook (markdown, code, outputs, figures); <a href=\"findings.html\">the findings</a> "
             "collect every verdict the notebooks state, with the numbers behind it. Read them in this order: "
             "each says what it teaches, what to read first and how long it ran.</p>"
             f"<ol class=\"path\">{''.join(items)}</ol>")
    (out / "index.html").write_text(_page(f"pds notebooks ({profile})", index))
    return {"out": str(out), "pages": pages, "missing": missing}


def learning_path(src) -> list[dict]:
    """The notebooks in order — a notebook whose ``metadata.pds.after`` names another comes right after it — each with
    what it teaches and what to read first (its ``metadata.pds``), its executed copy in ``src`` (None when missing)
    and the minutes that run took (papermill's record; None if unknown)."""
    steps = []
    for source in list_notebooks():
        meta = nbformat.read(source, as_version=4).metadata.get("pds", {})
        executed = Path(src) / source.name
        minutes = None
        if executed.is_file():
            duration = nbformat.read(executed, as_version=4).metadata.get("papermill", {}).get("duration")
            minutes = None if duration is None else duration / 60
        steps.append({"source": source, "teaches": meta.get("teaches", ""), "read_first": meta.get("read_first", []),
                      "executed": executed if executed.is_file() else None, "minutes": minutes,
                      "after": meta.get("after")})
    for step in [s for s in steps if s["after"]]:  # a notebook placed in the path after another ("after")
        at = next((i for i, s in enumerate(steps) if s["source"].stem == step["after"]), None)
        if at is not None:
            steps.remove(step)
            steps.insert(at + 1, step)
    return steps


def _path_item(step: dict, title: str) -> str:
    stem = step["source"].stem
    first = ", ".join(f"<a href=\"{s}.html\">{html.escape(s)}</a>" for s in step["read_first"]) or "nothing"
    ran = "" if step["minutes"] is None else f" · ran in {max(step['minutes'], 0.1):.1f} min"
    return (f"<li><a href=\"{stem}.html\">{html.escape(title)}</a><br>{html.escape(step['teaches'])}"
            f"<br><span class=\"meta\">read first: {first}{ran}</span></li>")


def _contents(body: str) -> str:
    """The page's sections (its h2 headings, with the anchors nbconvert gives them) as a line of links."""
    found = re.findall(r'<h2 id="([^"]+)"[^>]*>(.*?)(?:<a class="anchor-link"|</h2>)', body, flags=re.S)
    links = [f"<a href=\"#{hid}\">{html.escape(html.unescape(re.sub(r'<[^>]+>', '', text)).strip())}</a>"
             for hid, text in found]
    return "<br>On this page: " + " · ".join(links) if links else ""


def _copy_mathjax(out: Path) -> bool:
    """MathJax from the pinned jupyter-server-mathjax into ``out/mathjax``; False (pages use the CDN) without it."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        print("book: jupyter-server-mathjax is not installed (make setup installs it): equations need the network",
              file=sys.stderr)
        return False
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    shutil.copytree(static, out / "mathjax", ignore=shutil.ignore_patterns("SVG"))
    return True


def _anchor(name: str) -> str:
    return "nb-" + name


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "img" and "src" in a:
            self.images.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text())
    return p


def check_site(folder, notebooks=None) -> list[str]:
    """Problems of the site in ``folder``: a notebook without a page (``notebooks``: names, default all), an image that
    does not exist (a data URI that does not decode, a missing file), a relative link to a missing page or anchor.
    External links (http, https, mailto) are not followed. Returns the problems, empty when there are none."""
    folder = Path(folder)
    problems = []
    names = [p.stem for p in list_notebooks()] if notebooks is None else list(notebooks)
    for required in ["index.html", "findings.html", *[f"{n}.html" for n in names]]:
        if not (folder / required).is_file():
            problems.append(f"missing page {required}")
    parsed = {p.name: _parse(p) for p in folder.glob("*.html")}
    for name, page in parsed.items():
        for src in page.images:
            if src.startswith("data:"):
                head, _, payload = src.partition(",")
                try:
                    if ";base64" in head:
                        base64.b64decode(payload, validate=True)
                except (binascii.Error, ValueError):
                    problems.append(f"{name}: an image's data URI does not decode")
                if not payload:
                    problems.append(f"{name}: an empty image")
            elif not urlparse(src).scheme and not (folder / unquote(src)).is_file():
                problems.append(f"{name}: image {src} does not exist")
        for href in page.links:
            url = urlparse(href)
            if url.scheme in ("http", "https", "mailto"):
                continue
            target = name if not url.path else unquote(url.path)
            if target not in parsed:
                problems.append(f"{name}: link {href} leads to no page")
            elif url.fragment and url.fragment not in parsed[target].ids:
                problems.append(f"{name}: link {href}: no anchor #{url.fragment} in {target}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pds.publish.book", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default", choices=PROFILES)
    parser.add_argument("--src", default=None, help="folder of executed notebooks (default build/notebooks/<profile>)")
    parser.add_argument("--out", default=None, help="site folder (default build/book)")
    args = parser.parse_args(argv)
    src = Path(args.src) if args.src else BUILD_DIR / "notebooks" / args.profile
    if not any((src / p.name).is_file() for p in list_notebooks()):  # before the site folder is replaced
        print(f"no executed notebooks of the {args.profile} profile in {src}: run `PROFILE={args.profile} make "
              "notebooks` first", file=sys.stderr)
        return 2
    result = build(args.profile, src, args.out)
    problems = check_site(result["out"], result["pages"])
    for p in problems:
        print(p, file=sys.stderr)
    print(json.dumps({"index": str(Path(result["out"]) / "index.html"), "pages": len(result["pages"]),
                      "missing": result["missing"], "problems": len(problems)}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
