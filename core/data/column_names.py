"""Name rules of the mapping suggestions: which column names point at which role.

The tables list normalised column names (lower case, letters and digits only, see
:func:`norm`) that name a role outright, and the words that point at a role when they
appear inside a longer name ("InvoiceDate", "customer_no"). :mod:`core.data.suggest`
weighs these against what the content shows (:mod:`core.data.column_profiles`).
"""

from __future__ import annotations

import re

# Normalised column names (lower case, letters and digits only) suggested per role.
EVENT_NAMES: dict[str, tuple[str, ...]] = {
    "user": (
        "userid",
        "user",
        "uid",
        "customerid",
        "customer",
        "visitorid",
        "visitor",
        "clientid",
        "client",
        "memberid",
        "member",
        "accountid",
        "account",
        "reviewerid",
        "sessionid",
        "session",
        "personid",
        "buyerid",
        "buyer",
        "shopperid",
        "listenerid",
        "viewerid",
        "readerid",
        "profileid",
    ),
    "item": (
        "itemid",
        "item",
        "movieid",
        "movie",
        "productid",
        "product",
        "asin",
        "sku",
        "articleid",
        "article",
        "trackid",
        "track",
        "songid",
        "song",
        "bookid",
        "book",
        "isbn",
        "contentid",
        "content",
        "iid",
        "videoid",
        "video",
        "offerid",
        "stockcode",
        "productcode",
        "itemcode",
        "skuid",
        "artistid",
        "pageid",
        "courseid",
        "recipeid",
        "postid",
    ),
    "time": (
        "timestamp",
        "eventtime",
        "time",
        "datetime",
        "date",
        "ts",
        "createdat",
        "eventdate",
        "unixtime",
        "unixreviewtime",
        "reviewtime",
        "occurredat",
        "eventtimestamp",
    ),
    "type": ("eventtype", "event", "action", "behavior", "behaviour", "interaction", "type"),
    "value": ("rating", "score", "value", "weight", "stars", "quantity", "count", "overall"),
}
ITEM_NAMES: dict[str, tuple[str, ...]] = {
    "item": EVENT_NAMES["item"] + ("id",),
    "title": (
        "title",
        "name",
        "itemname",
        "productname",
        "moviename",
        "label",
        "itemtitle",
        "producttitle",
    ),
    "categories": (
        "genres",
        "genre",
        "categories",
        "category",
        "tags",
        "tag",
        "topics",
        "topic",
        "section",
        "department",
        "categoryname",
        "productcategory",
        "brand",
    ),
    "text": (
        "text",
        "description",
        "desc",
        "summary",
        "overview",
        "plot",
        "body",
        "content",
        "productdescription",
        "itemdescription",
    ),
}
# Words inside a longer name that point at a role ("InvoiceDate", "customer_no").
_NAME_WORDS: dict[str, tuple[str, ...]] = {
    "user": ("user", "customer", "visitor", "client", "member", "account", "buyer", "shopper"),
    "item": ("item", "product", "movie", "article", "sku", "track", "song", "book", "stock"),
    "time": ("timestamp", "date", "time"),
}
_KEY_WORDS = ("order", "invoice", "basket", "cart", "transaction", "receipt", "session")


def norm(name: str) -> str:
    """A column name in lower-case letters and digits (``"Customer ID"`` -> ``customerid``)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def name_rank(name: str, names: dict[str, tuple[str, ...]], role: str) -> int | None:
    """Rank of an exact name match for ``role`` (lower is better), else None."""
    n = norm(name)
    return names[role].index(n) if n in names[role] else None


def has_word(name: str, role: str) -> bool:
    """Whether a word that points at ``role`` appears inside the name ("InvoiceDate")."""
    n = norm(name)
    return any(word in n for word in _NAME_WORDS.get(role, ()))


def is_key_name(name: str) -> bool:
    """Whether the name says order, invoice, basket, session...: a key, not a user or item."""
    n = norm(name)
    return any(word in n for word in _KEY_WORDS)
