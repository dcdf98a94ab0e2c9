"""Data: reading behaviour logs into the store (ingest, column suggestions, upload spooling),
the demo log, per-user sequences and the splits. Imports only ``core.common`` and ``core.store``."""
