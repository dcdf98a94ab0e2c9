"""Names that reach SQL: quoting identifiers and checking dataset names.

:func:`quote_ident` is the only place that turns a string into a SQL identifier (column
names of uploaded files); dataset names are validated slugs (:func:`validate_dataset_name`),
stored as values and never used as table names or paths.
"""

from __future__ import annotations

import re

from core.store.errors import StoreError

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def quote_ident(name: str) -> str:
    """Quote ``name`` as a SQL identifier; the only way file-provided names reach SQL.

    >>> quote_ident('we"ird; DROP TABLE x')
    '"we""ird; DROP TABLE x"'
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise StoreError(f"invalid column name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def validate_dataset_name(name: str) -> str:
    """Return ``name`` if it is a safe slug, else raise :class:`StoreError`.

    A slug is 1-63 characters of lower-case letters, digits, ``_`` and ``-``,
    starting with a letter or digit (so never ``..``, a path or a quote).
    """
    if not isinstance(name, str) or not _SLUG.match(name):
        raise StoreError(
            f"invalid dataset name {name!r}: use 1-63 lower-case letters, digits, '_' or '-', "
            "starting with a letter or digit (for example 'movielens-small')"
        )
    return name


def slugify(text: str) -> str:
    """Turn a file name or free text into a valid dataset name suggestion."""
    stem = re.sub(r"\.(csv|tsv|txt|parquet|gz|dat)$", "", text.lower().strip(), flags=re.I)
    stem = re.sub(r"\.(csv|tsv|txt|parquet|dat)$", "", stem, flags=re.I)
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem).strip("-_")[:63]
    return slug or "dataset"
