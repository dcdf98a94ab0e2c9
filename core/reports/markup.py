"""HTML building blocks of the shareable report (:mod:`core.reports.page`).

Everything that turns values into markup lives here, so one rule holds everywhere:
every string that came from data (ids, titles, categories, file names, dataset and
model names, settings) passes through :func:`esc` (``html.escape``) before it is
written, and every figure is serialised as JSON whose ``<``, ``>`` and ``&`` are
written as ``\\u003c``-style escapes, so no value can close the ``<script>`` holding it.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from core.store import DatasetInfo

# JSON text that is safe inside <script>: nothing can end the element or open a comment.
_SCRIPT_SAFE = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}

CSS = """
:root { --accent: #4C6EF5; --muted: #666; --line: #dee2e6; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212529;
       margin: 0; background: #fff; }
main, footer { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header.top { border-bottom: 3px solid var(--accent); margin-bottom: 8px; }
h1 { font-size: 28px; margin: 24px 0 4px; }
h2 { font-size: 22px; margin: 36px 0 8px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 17px; margin: 22px 0 6px; }
p.lead { color: var(--muted); margin-top: 0; }
p.note { color: var(--muted); font-size: 13px; margin: 4px 0; }
p.absent { background: #f1f3f5; border-left: 4px solid #adb5bd; padding: 8px 12px; }
nav.toc a { margin-right: 14px; color: var(--accent); text-decoration: none; }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr));
           gap: 8px; margin: 12px 0; }
dl.facts div { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
dl.facts dt { font-size: 12px; color: var(--muted); }
dl.facts dd { margin: 0; font-size: 19px; font-weight: 600; overflow-wrap: anywhere; }
dl.facts dd small { display: block; font-size: 12px; font-weight: 400; color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f8f9fa; overflow-wrap: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: normal; }
td { min-width: 4em; }
.table { overflow-x: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 12px; }
.grid > *, .side > * { min-width: 0; }
.grid > p.absent { align-self: start; }
.chart { margin: 6px 0; break-inside: avoid; page-break-inside: avoid; }
.plot { width: 100%; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
section.user { border-top: 1px dashed var(--line); margin-top: 18px; }
footer { color: var(--muted); font-size: 13px; border-top: 1px solid var(--line);
         margin-top: 40px; padding-top: 10px; padding-bottom: 30px; }
@media print {
  @page { margin: 14mm; }
  body { font-size: 12px; }
  main, footer { max-width: none; padding: 0; }
  nav.toc { display: none; }
  h2 { break-before: page; page-break-before: always; }
  h2.first { break-before: auto; page-break-before: auto; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  .grid, .side { display: block; }
  .chart, table, dl.facts, tr { break-inside: avoid; page-break-inside: avoid; }
}
"""

# Draws every figure from its JSON once the page has loaded, and again at print size.
RENDER_JS = """
(function () {
  var template = JSON.parse(document.getElementById("reclens-template").textContent);
  var plots = [];
  document.querySelectorAll("script.reclens-figure").forEach(function (node) {
    var spec = JSON.parse(node.textContent);
    var target = document.getElementById(node.getAttribute("data-target"));
    if (!spec.layout.template) { spec.layout.template = template; }
    Plotly.newPlot(target, spec.data, spec.layout,
                   {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["toImage"]});
    plots.push(target);
  });
  function resize() { plots.forEach(function (p) { Plotly.Plots.resize(p); }); }
  window.addEventListener("beforeprint", resize);
  window.addEventListener("afterprint", resize);
})();
"""


def esc(value: Any) -> str:
    """Text for HTML: ``&``, ``<``, ``>`` and both quotes escaped.

    >>> esc("<a href='x'>A & B</a>")
    '&lt;a href=&#x27;x&#x27;&gt;A &amp; B&lt;/a&gt;'
    """
    return html.escape("" if value is None else str(value), quote=True)


def script_json(value: Any) -> str:
    """``value`` as JSON that can sit inside a ``<script>`` element: no ``<``, ``>`` or
    ``&`` is left as such, so ``</script>`` or ``<!--`` from data cannot end or change it.

    >>> script_json({"t": "</script><b>"})
    '{"t": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    for char, escaped in _SCRIPT_SAFE.items():
        text = text.replace(char, escaped)
    return text


def fmt_int(value: Any) -> str:
    """A count with thousands separators ("3,000"); "—" when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):,.0f}"


def fmt_num(value: Any, digits: int = 4) -> str:
    """A metric with ``digits`` decimals; "—" when missing or not a number."""
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


def paragraph(text: str, css: str | None = None) -> str:
    """One paragraph of text (escaped); ``css`` its class (``note``, ``absent``, ``lead``)."""
    cls = f' class="{css}"' if css else ""
    return f"<p{cls}>{esc(text)}</p>"


def absent(text: str) -> str:
    """A sentence saying why a part of the report is not there."""
    return paragraph(text, "absent")


def facts(pairs: Iterable[tuple[str, ...]]) -> str:
    """A grid of headline figures: (label, value) or (label, value, detail), all escaped."""
    cells = "".join(
        f"<div><dt>{esc(p[0])}</dt><dd>{esc(p[1])}"
        + (f"<small>{esc(p[2])}</small>" if len(p) > 2 and p[2] else "")
        + "</dd></div>"
        for p in pairs
    )
    return f'<dl class="facts">{cells}</dl>'


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str] | None = None,
    numeric: Iterable[str] = (),
    caption: str | None = None,
) -> str:
    """A table of ``rows`` (dicts); ``columns`` picks and orders them (default: the first
    row's keys); cells of ``numeric`` columns are right-aligned. Every cell is escaped."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    right = set(numeric)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{esc(_cell(r.get(c)))}</td>'
            if c in right
            else f"<td>{esc(_cell(r.get(c)))}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (
        f'<div class="table"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def heading(level: int, text: str, anchor: str | None = None, css: str | None = None) -> str:
    """``<h2>``-style heading (text escaped; ``anchor`` is one of the report's own ids)."""
    attrs = (f' id="{esc(anchor)}"' if anchor else "") + (f' class="{css}"' if css else "")
    return f"<h{level}{attrs}>{esc(text)}</h{level}>"


class Figures:
    """The report's Plotly figures: each placed as a ``<div>`` with its JSON beside it.

    Figures share one layout template (written once at the end of the page) instead of
    carrying a copy each, which keeps the file small.
    """

    def __init__(self) -> None:
        self.count = 0
        self.template: dict[str, Any] | None = None

    def place(self, fig: go.Figure) -> str:
        """The markup of one figure: its ``div`` and its JSON (``<script type=
        "application/json">``, drawn by the page's one rendering script)."""
        spec = json.loads(pio.to_json(fig, validate=False))
        layout = spec.setdefault("layout", {})
        template = layout.get("template")
        if template is not None:
            if self.template is None:
                self.template = template
            if template == self.template:
                del layout["template"]
        self.count += 1
        target = f"reclens-fig-{self.count}"
        return (
            f'<div class="chart"><div class="plot" id="{target}"></div>'
            f'<script type="application/json" class="reclens-figure" data-target="{target}">'
            f"{script_json(spec)}</script></div>"
        )

    def pair(self, figs: Sequence[go.Figure | str]) -> str:
        """Figures (or ready markup) side by side on screen, one under another in print."""
        cells = "".join(f if isinstance(f, str) else self.place(f) for f in figs)
        return f'<div class="grid">{cells}</div>'

    def template_script(self) -> str:
        """The shared layout template, as JSON for the rendering script."""
        return (
            '<script type="application/json" id="reclens-template">'
            f"{script_json(self.template or {})}</script>"
        )


def page(title: str, body: str, footer: str, figures: Figures) -> str:
    """The whole self-contained document: Plotly's library inlined once in the head,
    the body, the footer, then the figures' template and the one rendering script."""
    from plotly.offline import get_plotlyjs

    library = get_plotlyjs().replace("</script", "<\\/script")  # none today; never one
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="RecLens">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n"
        f"<script>{library}</script>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        f"<footer>{footer}</footer>\n"
        f"{figures.template_script()}\n<script>{RENDER_JS}</script>\n</body>\n</html>\n"
    )


class ReportError(ValueError):
    """A report that cannot be made as asked (an unknown evaluation or user...)."""


def no_categories(info: DatasetInfo, what: str) -> str:
    """The one sentence a category-dependent part shows on a dataset without categories."""
    why = (
        "it was loaded without an item file"
        if info.n_item_rows == 0
        else "its item details have no categories column"
    )
    return f"{what} needs item categories, and this dataset has none ({why})."
