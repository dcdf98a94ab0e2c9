"""Serving: recommendations with their reasons, interest vectors, and exports."""
