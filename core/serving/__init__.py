"""Serving: a model loaded with its dataset, recommendations with their reasons, interest
vectors, and every user's top-K (the export)."""
