"""The tables of the store and the migrations that create them.

Schema (version :data:`SCHEMA_VERSION`):

* ``meta(key, value)`` holds ``schema_version``.
* ``datasets`` is the catalogue: name, source file names, created, counts, the
  column mapping used, the cleaning report and a content fingerprint.
* ``events(dataset_id, user_id, item_id, ts, pos, event_type, value)``: ``pos`` is
  the 0-based order of the event within its user (time, then file order).
* ``items(dataset_id, item_id, title, categories, text)``.
* ``planted_interests``: ground truth of the generated demo dataset.
* ``models``, ``evaluations``, ``vectors``: the registry of trained models,
  stored evaluation results and cached vectors used by later features.

Migrations are a list of SQL scripts; the database records the version reached
and :meth:`core.store.connection.StoreConnection.migrate` applies the rest inside one
transaction.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

MIGRATIONS: list[str] = [
    # 1: the behaviour store and room for models, evaluations and cached vectors.
    """
    CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE SEQUENCE IF NOT EXISTS dataset_ids START 1;
    CREATE TABLE datasets (
        dataset_id   INTEGER PRIMARY KEY,
        name         VARCHAR NOT NULL UNIQUE,
        sources      VARCHAR[] NOT NULL,
        created      TIMESTAMP NOT NULL,
        n_events     BIGINT NOT NULL,
        n_users      BIGINT NOT NULL,
        n_items      BIGINT NOT NULL,
        n_item_rows  BIGINT NOT NULL,
        has_time     BOOLEAN NOT NULL,
        mapping      JSON NOT NULL,
        report       JSON NOT NULL,
        fingerprint  VARCHAR NOT NULL
    );
    CREATE TABLE events (
        dataset_id  INTEGER NOT NULL,
        user_id     VARCHAR NOT NULL,
        item_id     VARCHAR NOT NULL,
        ts          TIMESTAMP,
        pos         INTEGER NOT NULL,
        event_type  VARCHAR,
        value       DOUBLE
    );
    CREATE TABLE items (
        dataset_id  INTEGER NOT NULL,
        item_id     VARCHAR NOT NULL,
        title       VARCHAR,
        categories  VARCHAR[],
        text        VARCHAR
    );
    CREATE TABLE planted_interests (
        dataset_id       INTEGER NOT NULL,
        user_id          VARCHAR NOT NULL,
        interests        VARCHAR[] NOT NULL,
        initial_interest VARCHAR NOT NULL,
        final_interest   VARCHAR NOT NULL,
        shift_at         INTEGER NOT NULL
    );
    CREATE TABLE models (
        name        VARCHAR PRIMARY KEY,
        dataset_id  INTEGER NOT NULL,
        path        VARCHAR NOT NULL,
        created     TIMESTAMP NOT NULL,
        config      JSON NOT NULL,
        metrics     JSON NOT NULL
    );
    CREATE TABLE evaluations (
        evaluation_id VARCHAR PRIMARY KEY,
        model_name    VARCHAR NOT NULL,
        dataset_id    INTEGER NOT NULL,
        settings      JSON NOT NULL,
        metrics       JSON NOT NULL,
        segments      JSON,
        created       TIMESTAMP NOT NULL
    );
    CREATE TABLE vectors (
        kind    VARCHAR NOT NULL,
        owner   VARCHAR NOT NULL,
        key     VARCHAR NOT NULL,
        vector  FLOAT[] NOT NULL,
        PRIMARY KEY (kind, owner, key)
    );
    """,
]
