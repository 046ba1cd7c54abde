"""Fixtures for postfix tests (filled in by the work that needs them)."""
