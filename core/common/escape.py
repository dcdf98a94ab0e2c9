"""Text from data, made safe for where it is shown: one helper per target.

Ids, titles, categories, event types and file names come from uploaded files, so they
may hold markup. Streamlit renders Markdown (and so links and images) in markdown,
captions, messages, metrics and widget labels; Plotly renders a subset of HTML
(``<a href>``, ``<span style>``, ``<b>``, entities) in labels, legends and hover text.
Escaped text shows exactly as it was written, and nothing in it acts.
"""

from __future__ import annotations

import html
import re
from typing import Any

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#|~$])")
# Characters that act only next to something: ":" before a word (a URL scheme, an emoji
# or icon shortcode, a colour directive), "@" inside an e-mail address, "&" opening an
# entity, "www." starting a link. Only there are they escaped.
_CONTEXTUAL = re.compile(r"(:(?=\S)|(?<=\S)@(?=\S)|&(?=#?\w+;))")
_LINE_START = re.compile(r"^(\s*)([-+=]|\d+\.)", re.MULTILINE)
_WWW = re.compile(r"(?i)\b(www)\.")


def markdown(text: Any) -> str:
    r"""``text`` as Markdown that renders as exactly that text.

    Every character Markdown or HTML gives a meaning is backslash-escaped; ``:``, ``@``
    and ``&`` where they would start a link, a shortcode or an entity (so a bare URL or
    e-mail address is no link and ``&lt;`` stays ``&lt;``), and ``www.``; hyphens,
    pluses and dots only mean something at the start of a line (lists, headings), so
    only there are they escaped: ``"tiny-demo"`` and ``"figures: 100"`` stay readable
    in the source too.

    >>> markdown("**bold** <a href='x'>")
    "\\*\\*bold\\*\\* \\<a href='x'\\>"
    >>> markdown("see http://x, a@b.org or www.x.org, &lt; :red[x]; note: fine")
    'see http\\://x, a\\@b.org or www\\.x.org, \\&lt; \\:red\\[x\\]; note: fine'
    >>> markdown("- item")
    '\\- item'
    """
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))
    escaped = _CONTEXTUAL.sub(r"\\\1", escaped)
    escaped = _WWW.sub(r"\1\\.", escaped)

    def neutralise(match: re.Match) -> str:
        marker = match.group(2)
        return match.group(1) + (marker[:-1] + "\\." if marker.endswith(".") else "\\" + marker)

    return _LINE_START.sub(neutralise, escaped)


def plotly(text: Any) -> str:
    """``text`` for a Plotly label, legend entry, tick or hover text: its HTML-like tags
    and entities are escaped, so Plotly shows them as written.

    >>> plotly("<a href='http://x'>A & B</a>")
    "&lt;a href='http://x'&gt;A &amp; B&lt;/a&gt;"
    """
    return html.escape(str(text), quote=False)


def plotly_values(values: Any) -> Any:
    """A column or list of values for Plotly, its strings escaped (:func:`plotly`);
    missing values and numbers stay as they are."""
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    escaped = series.map(lambda v: plotly(v) if isinstance(v, str) else v)
    return escaped if isinstance(values, pd.Series) else list(escaped)
