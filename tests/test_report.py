"""Tests of the shareable report (core.reports.page): contents, shapes, safety, the CLI."""

from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _trained import MODEL, copy_of_trained
from plotly.offline import get_plotlyjs
from shapes import MARKUP, copy_of_shape
from test_cli import assert_user_error, cli

from core.cli import main
from core.data.ingest import ingest
from core.data.mapping import EventMapping
from core.evaluation import runner
from core.evaluation.results import EvalConfig, describe
from core.reports import charts
from core.reports.page import (
    ReportError,
    _compact_histogram,
    _long_tail_points,
    build_report,
    write_report,
)
from core.store import Store

SECTIONS = ["Dataset", "Model card", "Evaluation", "Interests", "Example users"]
# The only tags the report writes; anything else would have come from data.
TAGS = {
    "html", "head", "meta", "title", "style", "script", "body", "main", "header", "nav",
    "a", "h1", "h2", "h3", "h4", "p", "dl", "dt", "dd", "div", "small", "table", "thead",
    "tbody", "tr", "th", "td", "section", "footer",
}  # fmt: skip


class Outline(HTMLParser):
    """What a report holds: headings, headline figures, scripts, links, tags and text."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[tuple[str, str]] = []
        self.facts: dict[str, str] = {}
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self._open: list[str] = []
        self._buffer: dict[str, str] = {}
        self.feed(document)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        if tag == "script":
            self.scripts.append(found)
        self.links += [v or "" for k, v in attrs if k in ("href", "src")]
        if tag in ("h1", "h2", "h3", "h4", "dt", "dd", "small"):
            self._buffer[tag] = ""
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3", "h4"):
            self.headings.append((tag, self._buffer.pop(tag, "").strip()))
        elif tag == "dd":
            self.facts[self._buffer.pop("dt", "").strip()] = self._buffer.pop("dd", "").strip()
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if "script" in self._open[-1:] or "style" in self._open[-1:]:
            return
        self.text.append(data)
        for tag in ("h1", "h2", "h3", "h4", "dt", "dd"):
            if tag in self._buffer and tag in self._open and "small" not in self._open:
                self._buffer[tag] += data

    def section_titles(self) -> list[str]:
        return [text for tag, text in self.headings if tag == "h2"]

    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


def without_library(document: str) -> str:
    """The document less Plotly's own library (its code holds links of its own)."""
    library = get_plotlyjs()
    assert document.count(library) == 1
    return document.replace(library, "")


def check_scripts(document: str, outline: Outline) -> None:
    """The only scripts are the report's: the library, one JSON per figure, the shared
    template and the renderer; none loads anything, and no figure's JSON holds a '<'."""
    figures = document.count('class="plot"')
    assert figures > 0
    assert len(outline.scripts) == figures + 3
    assert len(re.findall(r"<script\b", document, re.I)) == figures + 3
    plain = [s for s in outline.scripts if not s]
    assert len(plain) == 2  # the library (in the head) and the renderer
    data = [s for s in outline.scripts if s]
    assert all(s.get("type") == "application/json" for s in data)
    assert all("src" not in s for s in outline.scripts)
    blocks = re.findall(
        r'<script type="application/json"[^>]*>(.*?)</script>', document, re.S | re.I
    )
    assert len(blocks) == figures + 1
    for block in blocks:
        assert "<" not in block and ">" not in block
        json.loads(block)


def check_self_contained(document: str, outline: Outline) -> None:
    """One library, in the head; no external resource; the report's own tags only."""
    assert document.count(get_plotlyjs()) == 1
    head = document.split("</head>", 1)[0]
    assert get_plotlyjs() in head
    # outside the scripts (whose JSON may hold such text from data, inert in a string)
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", document, flags=re.S | re.I)
    for pattern in ('src="http', "src='http", 'href="http', "href='http", "url(", "@import"):
        assert pattern not in markup
    assert all(link.startswith("#") for link in outline.links), outline.links
    assert outline.tags <= TAGS, outline.tags - TAGS
    check_scripts(document, outline)


# --------------------------------------------------------------------------- the trained demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The trained demo with a small stored evaluation, and its report (built once)."""
    folder = tmp_path_factory.mktemp("report")
    db = copy_of_trained(folder)
    store = Store(db)
    try:
        result, _ = runner.run(
            store,
            models=[MODEL],
            baselines=["pop", "markov"],
            config=EvalConfig(bootstrap=50, permutations=100, sampled=20),
        )
        info = store.get_dataset("demo")
        document = build_report(store, "demo", model=MODEL)
        model_path = store.get_model(MODEL).path
        metrics = store.get_model(MODEL).metrics
    finally:
        store.close()
    return {
        "db": db,
        "folder": folder,
        "info": info,
        "evaluation": result,
        "document": document,
        "model_path": model_path,
        "metrics": metrics,
    }


def test_the_demo_report_holds_every_section_with_the_stored_figures(demo: dict) -> None:
    document, info = demo["document"], demo["info"]
    outline = Outline(document)
    assert outline.section_titles() == SECTIONS
    assert outline.headings[0] == ("h1", "RecLens report: demo")
    facts = outline.facts
    assert facts["Users"] == f"{info.n_users:,}" == "300"
    assert facts["Items"] == f"{info.n_items:,}"
    assert facts["Events"] == f"{info.n_events:,}"
    assert facts["Rows read"] == f"{info.report['rows_read']:,}"
    text = outline.visible()
    assert "Cleaning report of the load" in text
    assert f"Source: {info.sources[0]}" in text
    # the model card: the validation figure with the memory, and the Transformer alone
    assert f"{demo['metrics']['val_ndcg@10']:.4f}" in text
    assert "the Transformer alone" in text and "Settings" in text
    # the evaluation: the model's NDCG@10 as stored, the protocol, the significance mark
    run = demo["evaluation"]
    res = run.results[MODEL]
    assert facts[f"NDCG@10 of {MODEL}"] == f"{res['ndcg@10']:.4f}"
    assert f"{res['ndcg@10']:.4f} [{res['ci']['ndcg@10'][0]:.4f}," in text
    assert describe(run.settings) in text and "sampled figures: 20 negatives" in text
    assert "sampled ndcg@10" in text and f"{res['sampled']['ndcg@10']:.4f}" in text
    assert "NDCG@10 (sampled ranking, 95% CI)" in document  # a chart's title
    assert f"evaluation run {run.settings['run_id']}" in text
    assert "vs best baseline" in text and run.settings["best_baseline"] in text
    # interests and example users: the first user of each of the first five segments
    assert "Showing 300 of 300 users." in text
    users = [t for tag, t in outline.headings if tag == "h3" and t.startswith("User ")]
    assert len(users) == 5
    assert "because of" in text and "Most popular (same exclusions)" in text
    assert f"fingerprint {info.fingerprint}" in text and "Generated by RecLens on" in text


def test_the_demo_report_is_self_contained_printable_and_holds_no_local_path(demo: dict) -> None:
    document = demo["document"]
    outline = Outline(document)
    check_self_contained(document, outline)
    rest = without_library(document)  # nor in the figures (the demo holds no such text)
    assert not re.search(r"""(src|href)=["']?http""", rest) and "url(" not in rest
    assert document.count("Plotly.newPlot") == 1  # one renderer draws every figure
    assert "@media print" in document and "break-inside: avoid" in document
    for path in (demo["folder"], demo["db"], demo["model_path"], Path(demo["model_path"]).parent):
        assert str(path) not in document
    assert str(Path(demo["db"]).resolve().parent) not in document


def test_an_evaluation_is_picked_by_id_and_example_users_by_name(demo: dict) -> None:
    store = Store(demo["db"])
    try:
        first = demo["evaluation"].settings["run_id"]
        later, _ = runner.run(
            store, dataset="demo", baselines=["pop"], config=EvalConfig(bootstrap=20)
        )
        latest = build_report(store, "demo")  # no model: the dataset's latest run
        chosen = build_report(store, "demo", MODEL, evaluation=first, users=["u00007"])
        with pytest.raises(ReportError, match="no stored evaluation 'nope'"):
            build_report(store, "demo", evaluation="nope")
        with pytest.raises(ReportError, match="user 'nobody'"):
            build_report(store, "demo", MODEL, users=["nobody"])
        with pytest.raises(ReportError, match="need a model"):
            build_report(store, "demo", users=["u00007"])
    finally:
        store.close()
    assert f"evaluation run {later.settings['run_id']}" in Outline(latest).visible()
    assert "No model was given" in latest
    outline = Outline(chosen)
    assert f"evaluation run {first}" in outline.visible()
    assert [t for tag, t in outline.headings if t.startswith("User ")] == ["User u00007"]


# --------------------------------------------------------------------------- shapes


def test_a_dataset_without_an_item_file_says_what_needs_categories(tmp_path: Path) -> None:
    db = copy_of_shape("ids_only", tmp_path)
    store = Store(db)
    try:
        document = build_report(store, "ids_only", model="ids_only-model")
    finally:
        store.close()
    outline = Outline(document)
    assert outline.section_titles() == SECTIONS
    text = outline.visible()
    sentence = (
        "needs item categories, and this dataset has none (it was loaded without an item file)."
    )
    assert f"The top categories chart {sentence}" in text
    assert f"Each segment's top categories {sentence}" in text
    assert "top categories (mean affinity)" not in text
    assert "No stored evaluation of ids_only" in text
    assert "No event types" in text
    check_self_contained(document, outline)


def test_markup_from_data_never_acts(tmp_path: Path, write) -> None:
    """Ids, titles, categories, event types and file names holding markup are text."""
    db = copy_of_shape("markup", tmp_path)
    hostile = "<script>alert(1)</script>\"quoted\" 'single'.csv"
    rows = pd.DataFrame(
        [
            {
                "user": f'u{u}"><img src=x onerror=alert(3)>',
                "item": f"</script><script>alert(2)</script>{i}",
                "time": 1_700_000_000 + 60 * (u * 9 + i),
                "type": f"</script><b>t{i % 2}</b>",
            }
            for u in range(6)
            for i in range(8)
        ]
    )
    log = write("log.csv", rows.to_csv(index=False))
    store = Store(db)
    try:
        ingest(
            store,
            "hostile",
            log,
            EventMapping(user="user", item="item", time="time", type="type"),
            source_names=[hostile],
        )
        documents = {
            "markup": build_report(store, "markup", model="markup-model"),
            "hostile": build_report(store, "hostile"),
        }
    finally:
        store.close()
    for name, document in documents.items():
        outline = Outline(document)
        check_self_contained(document, outline)
        for raw in ("<script>alert", "<a href='http://evil", "<span style=", "<img", "<b>"):
            assert raw not in document.lower(), (name, raw)
    assert html.escape(hostile) in documents["hostile"]
    assert hostile in Outline(documents["hostile"]).visible()  # shown as written
    markup = Outline(documents["markup"])
    assert html.escape(MARKUP[0]) in documents["markup"]
    users = [t for tag, t in markup.headings if tag == "h3" and t.startswith("User ")]
    assert users and all(any(m in t for m in MARKUP) for t in users)  # ids, as text


# --------------------------------------------------------------------------- large data


def test_the_report_modules_examples_hold() -> None:
    """Their docstring examples (escaping, JSON for a script, settings without paths)."""
    import doctest

    from core.reports import markup as report_html
    from core.reports import page as report

    for module in (report, report_html):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_large_frames_are_sent_compactly() -> None:
    popularity = pd.DataFrame({"rank": np.arange(1, 100_001), "events": np.arange(100_000, 0, -1)})
    tail = _long_tail_points(popularity)
    assert len(tail) <= 2_000 and tail["rank"].iloc[0] == 1 and tail["rank"].iloc[-1] == 100_000
    assert tail["rank"].is_monotonic_increasing
    lengths = pd.DataFrame({"events": np.random.default_rng(0).integers(1, 300, 50_000)})
    fig = _compact_histogram(charts.events_per_user(lengths))
    trace = fig.data[0]
    assert trace.histfunc == "sum" and len(trace.x) < 300
    assert int(np.sum(trace.y)) == 50_000
    values, counts = np.unique(lengths["events"], return_counts=True)
    assert dict(zip(trace.x, trace.y, strict=True)) == dict(zip(values, counts, strict=True))
    assert f"median {np.median(lengths['events']):g}" in fig.layout.title.text


# --------------------------------------------------------------------------- command line


def test_the_cli_writes_the_report_and_refuses_a_bad_evaluation(demo: dict) -> None:
    out = demo["folder"] / "report.html"
    proc = cli("report", "--dataset", "demo", "--model", MODEL, "--out", str(out), db=demo["db"])
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert f"path: {out}" in proc.stdout
    bad = cli(
        "report", "--dataset", "demo", "--evaluation", "nope", "--out", str(out), db=demo["db"]
    )
    assert_user_error(bad, "no stored evaluation 'nope'")


def test_cli_mistakes_exit_2_with_one_error_line(demo: dict, tmp_path: Path, capsys) -> None:
    db = tmp_path / "copy.duckdb"
    shutil.copyfile(demo["db"], db)
    out = str(tmp_path / "r.html")
    cases = {
        "no dataset called 'nope'": ["--dataset", "nope", "--out", out],
        "no model called 'ghost'": ["--dataset", "demo", "--model", "ghost", "--out", out],
        "user 'nobody'": ["--dataset", "demo", "--model", MODEL, "--users", "nobody", "--out", out],
        "must end in .html": ["--dataset", "demo", "--out", str(tmp_path / "r.pdf")],
        "no such folder": ["--dataset", "demo", "--out", str(tmp_path / "no" / "r.html")],
    }
    for fragment, args in cases.items():
        assert main(["--db", str(db), "report", *args]) == 2, fragment
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "r.html").exists()
    store = Store(db)
    try:
        summary = write_report(store, "demo", out=out)
    finally:
        store.close()
    assert summary["bytes"] == Path(out).stat().st_size and summary["model"] is None
    assert summary["sections"] == SECTIONS and summary["figures"] > 5


# --------------------------------------------------------------------------- a real browser


def test_the_report_draws_every_chart_offline_in_chromium(demo: dict) -> None:
    """Opened from disk with every request refused: no error, every figure drawn."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("no Chromium (apt-get install chromium)")
    path = demo["folder"] / "browser.html"
    path.write_text(demo["document"], encoding="utf-8")
    errors: list[str] = []
    refused: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(request_route) -> None:
                if request_route.request.url.startswith("file:"):
                    request_route.continue_()
                else:
                    refused.append(request_route.request.url)
                    request_route.abort()

            page.route("**/*", route)
            page.goto(path.as_uri())
            page.wait_for_function(
                "document.querySelectorAll('.plot .main-svg').length > 0", timeout=30_000
            )
            drawn = page.evaluate(
                "Array.from(document.querySelectorAll('.plot'))"
                ".filter(p => p.querySelector('.main-svg')).length"
            )
        finally:
            browser.close()
    assert errors == [] and refused == []
    assert drawn == demo["document"].count('class="plot"')
