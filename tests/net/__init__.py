"""Tests of bridge.net and its helpers (datasets, history, scoring and logging callbacks)."""
