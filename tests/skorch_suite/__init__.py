"""Runs skorch's own test suite against bridge through an import shim (opt-in, nothing downloaded)."""
