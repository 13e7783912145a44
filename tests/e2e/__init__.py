"""End-to-end harness: real Prometheus and Alertmanager binaries on loopback (see stack.py)."""
