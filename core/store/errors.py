"""The store's errors: what a user can act on, raised by every part of the store.

Their own module because every other module of ``core.store`` raises them, and the
layers above catch :class:`StoreError` to show its message.
"""

from __future__ import annotations


class StoreError(Exception):
    """A problem a user can act on (bad name, missing dataset, locked file...)."""


class DatabaseLockedError(StoreError):
    """The database file is held for writing by another process."""
