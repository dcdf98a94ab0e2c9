"""The suggested column mapping reads the data: logs whose names do not say it all.

Each log here is generated as a real export would look: a retail transaction export
whose product column has a name nobody lists, a log keyed by an order id before the
user, free-text product descriptions, meaningless header names, integer ids written as
floats, item details repeated on every event. The suggestion, the load, the command
line and the Data page's pickers are checked on each.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_cli import assert_user_error, cli, ok_json
from test_ingest import histories, items_of

from core.data.ingest import ingest, suggest, suggest_mapping
from core.data.inspection import inspect
from core.data.mapping import IngestError, ItemMapping
from core.store import Store, open_store

COUNTRIES = ["United Kingdom", "France", "Germany", "EIRE", "Spain"]
WORDS = ["white", "hanging", "heart", "light", "holder", "red", "retro", "spot", "cake", "tin"]


def retail_export(n_customers: int = 150, n_products: int = 300, seed: int = 1) -> str:
    """Invoice lines as a shop exports them: InvoiceNo first, a product code column named
    ``Ref`` (no known name), a free-text Description per product, a Country per customer,
    customer ids written as floats (pandas writes an int column with gaps that way)."""
    rng = random.Random(seed)
    products = {
        f"{85000 + i}{'A' if i % 7 == 0 else ''}": (
            " ".join(rng.sample(WORDS, 4)).upper() + f" {i}",
            round(rng.uniform(0.5, 9), 2),
        )
        for i in range(n_products)
    }
    codes = list(products)
    rows = ["InvoiceNo,Ref,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    invoice = 536_000
    for c in range(n_customers):
        customer, country = 12_000 + c, rng.choice(COUNTRIES)
        for _ in range(rng.randint(1, 4)):
            invoice += 1
            for k in range(rng.randint(1, 12)):
                code = rng.choice(codes)
                description, price = products[code]
                rows.append(
                    f'{invoice},{code},"{description}",{rng.randint(1, 24)},'
                    f"2010-12-{1 + c % 28:02d} 08:{k:02d}:00,{price},{customer}.0,{country}"
                )
    return "\n".join(rows) + "\n"


def keyed_log(header: str, seed: int = 2) -> str:
    """An order (session) id first, then the customer, the product and a time; every order
    belongs to one customer, every product is bought by many."""
    rng = random.Random(seed)
    rows = [header]
    order = 9_000
    for user in range(60):
        for _ in range(rng.randint(2, 5)):
            order += 1
            for k in range(rng.randint(1, 6)):
                rows.append(
                    f"o{order},c{user:03d},p{rng.randint(1, 80)},{1_700_000_000 + order * 60 + k}"
                )
    return "\n".join(rows) + "\n"


@pytest.fixture
def retail(tmp_path: Path) -> Path:
    path = tmp_path / "online_retail.csv"
    path.write_text(retail_export())
    return path


# --------------------------------------------------------------------------- the suggestion


def test_retail_export_user_by_name_item_by_content_invoice_is_a_key(store: Store, retail) -> None:
    found = suggest(inspect(store, retail))
    ev = found.events
    assert ev["user"].column == "CustomerID" and ev["user"].reason == "name matches"
    # the product column has no known name: its content says it (shared by many users)
    assert ev["item"].column == "Ref" and ev["item"].confident
    assert ev["item"].reason.startswith("guessed from content: 300 distinct values, each shared")
    assert ev["time"].column == "InvoiceDate"
    assert ev["value"].column == "Quantity"
    # neither the free-text description nor the per-customer country is an event type
    assert ev["type"].column is None
    assert any("'InvoiceNo': every value belongs to a single CustomerID" in n for n in found.notes)
    assert any("'Country' is the same on every row of a CustomerID" in n for n in found.notes)
    # the description is constant per product: an item detail, offered for the catalogue
    assert found.items["text"].column == "Description"
    assert "UnitPrice" not in {g.column for g in found.items.values()}


@pytest.mark.parametrize(
    ("header", "user", "item", "confident"),
    [
        ("order_id,client_no,item_code,timestamp", "client_no", "item_code", True),
        ("session,customer_ref,sku,ts", "customer_ref", "sku", True),
        # no name says anything: the column the order keys nest in is the user, a guess
        ("basket,who,what,when", "who", "what", False),
    ],
)
def test_a_first_column_that_is_an_order_or_session_key_is_not_the_user(
    header: str, user: str, item: str, confident: bool, store: Store, write
) -> None:
    found = suggest(inspect(store, write("orders.csv", keyed_log(header))))
    key = header.split(",")[0]
    assert (found.column("user"), found.column("item")) == (user, item)
    assert found.confident is confident
    assert key not in (found.column("user"), found.column("item"))
    assert any(n.startswith(f"{key!r}: every value belongs to a single") for n in found.notes)


def test_a_name_match_is_kept_when_the_other_id_column_has_no_known_name(
    store: Store, write
) -> None:
    rows = "".join(f"cust{u},X{(u * 7 + k) % 40:03d}\n" for u in range(30) for k in range(5))
    found = suggest(inspect(store, write("log.csv", "customer,thing\n" + rows)))
    assert found.events["user"].column == "customer" and found.events["user"].confident
    assert found.column("item") == "thing"


def test_free_text_is_never_an_event_type(store: Store, write) -> None:
    reviews = [
        "loved it, would buy again",
        "arrived late and the box was damaged",
        "exactly as described",
        "not worth the money at all",
    ]
    rows = "".join(
        f'u{u},i{(u + k) % 25},"{reviews[(u * k) % 4]} ({u}-{k})",{1_600_000_000 + 100 * k},'
        f"{['view', 'cart', 'buy'][k % 3]}\n"
        for u in range(40)
        for k in range(6)
    )
    path = write("reviews.csv", "user_id,item_id,event,timestamp,kind\n" + rows)
    found = suggest(inspect(store, path))
    # "event" is named like an event type but holds free text: vetoed, and said why
    assert found.column("type") == "kind"
    assert any(
        "'event' is named like the type column, but it holds free text" in n for n in found.notes
    )
    # reviews differ per event: not an item detail either
    assert "event" not in {g.column for g in found.items.values()}


def test_a_long_text_per_item_is_offered_as_title_or_description(store: Store, write) -> None:
    titles = {i: f"The {WORDS[i % 10]} of {WORDS[(i * 3) % 10]} volume {i}" for i in range(30)}
    rows = "".join(
        f'u{u},b{(u * 5 + k) % 30},"{titles[(u * 5 + k) % 30]}",{["view", "buy"][k % 2]}\n'
        for u in range(40)
        for k in range(5)
    )
    found = suggest(inspect(store, write("books.csv", "user,book,label_text,action\n" + rows)))
    assert found.column("type") == "action"
    assert found.items["title"].column == "label_text"
    assert not found.items["title"].confident  # from content, marked as a guess


def test_meaningless_header_names_are_guesses_that_ingest_refuses(store: Store, write) -> None:
    rows = "".join(
        f"u{u},i{(u + k) % 20},{1_700_000_000 + k}\n" for u in range(20) for k in range(4)
    )
    path = write("abc.csv", "alpha,beta,gamma\n" + rows)
    found = suggest(inspect(store, path))
    assert not found.confident and found.unsure_ids() == ["user", "item"]
    assert found.column("time") == "gamma"  # times are times, whatever the name
    with pytest.raises(IngestError, match="could not tell the user and item column") as info:
        ingest(store, "abc", path)
    assert "alpha, beta, gamma" in str(info.value)
    assert store.find_dataset("abc") is None


def test_headerless_files_keep_the_shape_rule(store: Store, write) -> None:
    path = write("pairs.txt", "7 300\n7 100\n5 200\n7 200\n5 100\n")
    insp = inspect(store, path)
    found = suggest(insp)
    assert found.confident
    assert (found.column("user"), found.column("item")) == tuple(insp.columns[:2])
    assert "shape rule" in found.events["user"].reason


# --------------------------------------------------------------------------- ids written as floats


def test_integer_ids_written_as_floats_are_normalised_text_ids_are_not(store: Store, write) -> None:
    events = write(
        "floats.csv",
        "customer,item,code,ts\n"
        "17850.0,3.0,007,1\n17850.0,12.0,0042,2\n13047.0,3.0,007,3\n,12.0,0042,4\n",
    )
    result = ingest(store, "floats", events, suggest_mapping(inspect(store, events)))
    assert histories(store, "floats") == {"17850": ["3", "12"], "13047": ["3"]}
    assert any("17850.0" in note and "without the .0" in note for note in result.report["notes"])
    # leading zeros of text ids stay, even next to a float-written column
    zeros = write("zeros.csv", "user,item\n001,007\n001,0042\n002,007\n")
    ingest(store, "zeros", zeros)
    assert histories(store, "zeros") == {"001": ["007", "0042"], "002": ["007"]}


def test_a_column_with_a_real_decimal_is_left_as_written(store: Store, write) -> None:
    path = write("dec.csv", "user,item\n1.0,a\n1.5,b\n2.0,a\n")
    ingest(store, "dec", path)
    assert set(histories(store, "dec")) == {"1.0", "1.5", "2.0"}


def test_float_ids_in_the_log_meet_integer_ids_in_the_item_file(store: Store, write) -> None:
    events = write("e.csv", "user,item\nu1,10.0\nu1,11.0\nu2,10.0\n")
    items = write("i.csv", "item,title\n10,Heat\n11,Up\n")
    ingest(store, "join", events, items_path=items)
    assert {k: v[0] for k, v in items_of(store, "join").items()} == {"10": "Heat", "11": "Up"}
    assert store.user_events(store.get_dataset("join").dataset_id, "u1")["title"].tolist() == [
        "Heat",
        "Up",
    ]


# --------------------------------------------------------------------------- item details in a log


def test_item_details_from_the_log_take_the_most_frequent_value(store: Store, write) -> None:
    path = write(
        "log.csv",
        "user,item,title,genre\n"
        "u1,a,Alien,Horror|SciFi\nu2,a,Alien,Horror|SciFi\nu3,a,ALIEN (1979),Horror|SciFi\n"
        "u1,b,Brazil,Comedy\nu2,b,Brazil,Comedy\n",
    )
    result = ingest(
        store, "films", path, item_mapping=ItemMapping(title="title", categories="genre")
    )
    assert items_of(store, "films") == {
        "a": ("Alien", ["Horror", "SciFi"], None),
        "b": ("Brazil", ["Comedy"], None),
    }
    assert result.report["items"]["varied_items"] == 1
    assert result.dataset.n_item_rows == 2
    note = next(n for n in result.report["notes"] if "item details taken from the log" in n)
    assert "most frequent value" in note and "1 items had differing values" in note
    assert store.get_dataset("films").mapping["items"]["from_log"] is True


def test_item_details_of_items_cleaned_away_are_not_kept(store: Store, write) -> None:
    from core.data.mapping import Cleaning

    path = write("log.csv", "user,item,title\nu1,a,A\nu2,a,A\nu3,b,B\n")
    ingest(
        store,
        "k",
        path,
        item_mapping=ItemMapping(title="title"),
        cleaning=Cleaning(min_item_events=2),
    )
    assert set(items_of(store, "k")) == {"a"}


# --------------------------------------------------------------------------- the command line


def test_cli_retail_export_loads_customers_not_invoices(tmp_path: Path, retail) -> None:
    db = tmp_path / "cli.duckdb"
    out = ok_json("ingest", "--dataset", "retail", "--events", str(retail), db=db)
    assert out["users"] == 150  # customers, not the ~375 invoices
    assert out["mapping"]["user"] == {"column": "CustomerID", "reason": "name matches"}
    assert out["mapping"]["item"]["column"] == "Ref"
    assert "type" not in out["mapping"]
    assert "--text-col 'Description'" in out["hint"]
    st = Store(db, read_only=True)
    users = set(st.query_df("SELECT DISTINCT user_id FROM events")["user_id"])
    st.close()
    assert "12000" in users and not any(u.endswith(".0") for u in users)


def test_cli_takes_item_details_from_the_log_itself(tmp_path: Path, retail) -> None:
    db = tmp_path / "cli.duckdb"
    out = ok_json(
        "ingest", "--dataset", "retail", "--events", str(retail), "--text-col", "Description",
        db=db,
    )  # fmt: skip
    assert out["item_rows"] == out["items"] == 300
    st = Store(db, read_only=True)
    info = st.get_dataset("retail")
    items = st.items_frame(info.dataset_id).set_index("item_id")
    st.close()
    assert items.loc["85001", "text"].endswith(" 1")
    assert "hint" not in out


def test_cli_refuses_a_header_file_whose_ids_are_only_guesses(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    path = tmp_path / "abc.csv"
    path.write_text("alpha,beta,gamma\n" + "".join(f"u{u},i{u % 3},{u}\n" for u in range(12)))
    message = assert_user_error(
        cli("ingest", "--dataset", "abc", "--events", str(path), db=db),
        "alpha, beta, gamma",
        "--user-col",
        "--item-col",
    )
    assert "could not tell the user and item column" in message
    out = ok_json(
        "ingest", "--dataset", "abc", "--events", str(path), "--user-col", "alpha",
        "--item-col", "beta",
        db=db,
    )  # fmt: skip
    assert (out["users"], out["items"]) == (12, 3)
    assert out["mapping"]["user"] == {"column": "alpha", "reason": "given"}


def test_cli_names_only_the_flag_that_is_missing(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    path = tmp_path / "log.csv"
    path.write_text("customer,thing\n" + "".join(f"c{u},t{u}\n" for u in range(5)))
    # every "thing" belongs to one customer: no column behaves like items
    assert_user_error(cli("ingest", "--dataset", "x", "--events", str(path), db=db), "--item-col")


# --------------------------------------------------------------------------- the Data page


@pytest.fixture
def app(tmp_path: Path, start_app) -> AppTest:
    return start_app(tmp_path / "app.duckdb", 120)


def _upload(app: AppTest, name: str, content: str) -> AppTest:
    app.switch_page("ui/pages/data.py").run()
    app.file_uploader(key="events_upload").upload(name, content.encode(), "text/csv").run()
    assert not app.exception, app.exception
    return app


def test_data_page_shows_each_suggestion_with_its_reason(app: AppTest) -> None:
    app = _upload(app, "online_retail.csv", retail_export())
    assert app.selectbox(key="map_user").value == "CustomerID"
    assert app.selectbox(key="map_item").value == "Ref"
    assert app.selectbox(key="map_type").value == "(none)"
    captions = [c.value for c in app.caption]
    assert any("Name matches" in c for c in captions)
    assert any("Guessed from content: 300 distinct values" in c for c in captions)
    assert any("InvoiceNo" in c and "order, invoice or session key" in c for c in captions)
    # the mapped preview already shows the ids as they will be stored
    mapped = next(d.value for d in app.dataframe if "raw_time" in d.value.columns)
    assert mapped["user_id"].iloc[0] == "12000"
    # item details found in the log are offered, ticked, with the description
    assert app.checkbox(key="use_log_items").value is True
    assert app.selectbox(key="lmap_text").value == "Description"
    app.button(key="ingest_button").click().run()
    assert not app.exception, app.exception
    info = open_store().get_dataset("online_retail")
    assert (info.n_users, info.n_items, info.n_item_rows) == (150, 300, 300)
    notes = [c.value for c in app.caption]
    assert any("item details taken from the log" in c for c in notes)


def test_data_page_pickers_change_the_stored_histories(app: AppTest) -> None:
    rows = "".join(
        f"u{u},i{(u + k) % 5},{1_700_000_000 + 10 * u + k}\n" for u in range(6) for k in range(3)
    )
    app = _upload(app, "abc.csv", "alpha,beta,gamma\n" + rows)
    captions = " ".join(c.value for c in app.caption)
    assert "**Guess**" in captions  # the ids are guesses on this file, and say so
    # read it the other way round: items as users
    app.selectbox(key="map_user").set_value("beta").run()
    app.selectbox(key="map_item").set_value("alpha").run()
    assert [c.value for c in app.caption].count("Your choice.") == 2
    app.button(key="ingest_button").click().run()
    assert not app.exception, app.exception
    store = open_store()
    info = store.get_dataset("abc")
    assert (info.n_users, info.n_items) == (5, 6)
    # i0's "history", in time order: (u0, k0), (u3, k2), (u4, k1), (u5, k0)
    assert store.user_history(info.dataset_id, "i0") == ["u0", "u3", "u4", "u5"]
