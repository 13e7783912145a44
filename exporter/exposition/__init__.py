"""Exposition: the /metrics text, built from the probing state at scrape time."""
