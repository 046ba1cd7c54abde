"""Fixtures for pebble tests (filled in by the work that needs them)."""
