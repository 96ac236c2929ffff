"""The HTML of an annotation: escaped text, one `<mark>` per shown span with its label link and
score, triplets, windows; a standalone page for many documents."""

from __future__ import annotations

from relik_jax import write_html
from relik_jax.core.types import NME, Span, Triplet
from relik_jax.reader.outputs import RelikOutput, WindowOutput


def _out() -> RelikOutput:
    text = "<b>Rome</b> is in Italy & Lazio."
    rome = Span(3, 7, "Rome", "Rome", 0.91)
    italy = Span(18, 23, "Italy <def> a country in Europe", "Italy", 0.5)
    lazio = Span(26, 31, NME, "Lazio", None)
    w = WindowOutput(0, 0, text, text.split(), [], candidates_read=[["Rome <def> capital", "Italy"]])
    return RelikOutput(text, [rome, italy, lazio], [Triplet(rome, "located in", italy, 0.875)], windows=[w])


def test_fragment_marks_links_scores_and_escapes():
    h = _out()._repr_html_()
    assert "&lt;b&gt;" in h and "<b>Rome" not in h and "&amp; " in h  # the text is escaped
    assert h.count("<mark") == 3
    assert 'href="https://en.wikipedia.org/wiki/Rome"' in h and 'href="https://en.wikipedia.org/wiki/Italy"' in h
    assert "wiki/--NME--" not in h and 'class="rj-nme"' in h  # no KB entity: no link
    assert '<span class="rj-score">0.91</span>' in h
    assert "<td>located in</td>" in h and "0.875" in h
    assert "<details><summary>window 0" in h and "Rome, Italy" in h  # candidates by title


def test_overlapping_spans_show_the_first_and_links_can_be_off():
    out = _out()
    out.spans.append(Span(3, 12, "Rome is", "Rome is", 0.2))
    h = out.to_html(link_base=None, windows=False)
    assert h.count("<mark") == 3 and "<a href" not in h and "<details>" not in h


def test_write_html_page(tmp_path):
    outs = [_out(), RelikOutput("Nothing here.", [])]
    outs[0].id = "doc-1"
    page = write_html(outs, tmp_path / "p.html", title="T & co").read_text()
    assert page.startswith("<!doctype html>") and "<title>T &amp; co</title>" in page
    assert page.count('class="rj-doc"') == 2 and "<h3>doc-1</h3>" in page and "no spans" in page
