"""Fixtures for zoo tests (filled in by the work that needs them)."""
