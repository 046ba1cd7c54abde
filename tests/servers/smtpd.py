"""Fixtures for smtpd tests (filled in by the work that needs them)."""
