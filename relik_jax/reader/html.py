"""Annotations as HTML: the text with its spans highlighted (label, link, score), the triplets, and
what each window read (its candidates, the retriever's hits). `RelikOutput._repr_html_` uses it, so a
notebook shows an output by itself; `write_html` writes one standalone page for many documents."""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relik_jax.core.types import NME

RelikOutput = Any  # a `relik_jax.reader.outputs.RelikOutput` (which imports this module to render itself)

WIKIPEDIA = "https://en.wikipedia.org/wiki/"
# eight label colours (light, readable behind black text); a label keeps its colour on a page
PALETTE = ("#ffe08a", "#b5e8ff", "#c8f7c5", "#ffc9de", "#e3d4ff", "#ffd8b0", "#d2f0ee", "#f0e6a8")

CSS = """
.rj-doc { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 2.1; margin: 0 0 1.2em 0;
  max-width: 60em; color: #1d1d1f; }
.rj-text mark { border-radius: 4px; padding: 0.05em 0.25em; }
.rj-text mark .rj-label { font-size: 0.7em; font-weight: 600; margin-left: 0.35em; vertical-align: 0.1em;
  color: #3a3a3c; }
.rj-text mark .rj-label a { color: #0b57d0; text-decoration: none; }
.rj-text mark .rj-score { font-size: 0.65em; color: #6e6e73; margin-left: 0.25em; }
.rj-nme { outline: 1px dashed #999; }
.rj-doc table { border-collapse: collapse; margin: 0.4em 0; font-size: 0.9em; line-height: 1.4; }
.rj-doc th, .rj-doc td { border: 1px solid #d2d2d7; padding: 0.2em 0.6em; text-align: left; }
.rj-doc th { background: #f5f5f7; }
.rj-doc details { font-size: 0.85em; line-height: 1.4; margin: 0.3em 0; }
.rj-doc summary { cursor: pointer; color: #424245; }
.rj-doc .rj-cands { color: #424245; }
.rj-empty { color: #86868b; font-style: italic; }
"""


def _colour(label: str, colours: dict[str, str]) -> str:
    if label not in colours:
        colours[label] = PALETTE[len(colours) % len(PALETTE)]
    return colours[label]


def _link(label: str, link_base: str | None) -> str:
    """The label's title (a passage label `Title <def> description` shows `Title`), linked."""
    title = _title(label)
    text = html.escape(title)
    if not link_base or label == NME:
        return text
    return (
        f'<a href="{html.escape(link_base + urllib.parse.quote(title.replace(" ", "_")))}" target="_blank">{text}</a>'
    )


def render_text(out: RelikOutput, *, link_base: str | None = WIKIPEDIA, colours: dict[str, str] | None = None) -> str:
    """The document's text with every span as a `<mark>` (its label, a link to it, its score)."""
    colours = {} if colours is None else colours
    parts, at = [], 0
    for s in sorted(out.spans, key=lambda s: (s.start, -s.end)):
        if s.start < at:  # nested or overlapping spans: the first one is shown
            continue
        parts.append(html.escape(out.text[at : s.start]))
        score = f'<span class="rj-score">{s.score:.2f}</span>' if s.score is not None else ""
        cls = ' class="rj-nme"' if s.label == NME else ""
        title = html.escape(f"{s.label}" + (f" ({s.score:.3f})" if s.score is not None else ""), quote=True)
        parts.append(
            f'<mark{cls} style="background:{_colour(s.label, colours)}" title="{title}">{html.escape(out.text[s.start : s.end])}'
            f'<span class="rj-label">{_link(s.label, link_base)}</span>{score}</mark>'
        )
        at = s.end
    parts.append(html.escape(out.text[at:]))
    return f'<div class="rj-text">{"".join(parts)}</div>'


def render_triplets(out: RelikOutput, *, link_base: str | None = WIKIPEDIA) -> str:
    if not out.triplets:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(t.subject.text)} ({_link(t.subject.label, link_base)})</td>"
        f"<td>{html.escape(t.relation)}</td>"
        f"<td>{html.escape(t.object.text)} ({_link(t.object.label, link_base)})</td><td>{t.confidence:.3f}</td></tr>"
        for t in out.triplets
    )
    return f"<table><tr><th>subject</th><th>relation</th><th>object</th><th>confidence</th></tr>{rows}</table>"


def _title(passage: str) -> str:
    """A candidate passage's title (`Title <def> description` → `Title`)."""
    return passage.split(" <def>", 1)[0]


def render_windows(out: RelikOutput) -> str:
    """One collapsible line per window: the candidates it read (and the retriever's scores)."""
    items = []
    for w in out.windows:
        if w.retrieved:
            cands = ", ".join(f"{html.escape(_title(h.text))} <small>({h.score:.2f})</small>" for h in w.retrieved)
        else:
            cands = " | ".join(", ".join(html.escape(_title(c)) for c in row) for row in w.candidates_read) or "none"
        snippet = html.escape(w.text if len(w.text) <= 80 else w.text[:77] + "...")
        items.append(
            f"<details><summary>window {w.window_id}: “{snippet}” ({len(w.spans)} spans)</summary>"
            f'<div class="rj-cands">{cands}</div></details>'
        )
    return "".join(items)


def render(out: RelikOutput, *, link_base: str | None = WIKIPEDIA, windows: bool = True,
           colours: dict[str, str] | None = None) -> str:  # fmt: skip
    """One document as an HTML fragment (its own `<style>`, so it renders anywhere)."""
    colours = {} if colours is None else colours
    body = render_text(out, link_base=link_base, colours=colours)
    if not out.spans:
        body += '<div class="rj-empty">no spans</div>'
    body += render_triplets(out, link_base=link_base)
    if windows:
        body += render_windows(out)
    return f'<div class="rj-doc">{body}</div>'


def fragment(out: RelikOutput, **kwargs) -> str:
    return f"<style>{CSS}</style>" + render(out, **kwargs)


def write_html(outputs: Sequence[RelikOutput], path: str | Path, *, title: str = "relik_jax annotations",
               link_base: str | None = WIKIPEDIA, windows: bool = True) -> Path:  # fmt: skip
    """A standalone HTML page of many documents (one colour per label across the page)."""
    colours: dict[str, str] = {}
    docs = "\n".join(
        (f"<h3>{html.escape(str(o.id))}</h3>" if o.id is not None else "")
        + render(o, link_base=link_base, windows=windows, colours=colours)
        for o in outputs
    )
    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>body {{ margin: 2em; }} h1, h3 {{ font-family: system-ui, sans-serif; }}{CSS}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>\n{docs}\n</body></html>\n"
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
