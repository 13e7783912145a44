"""ollama-probe-exporter: probes Ollama models on a schedule and serves what it measured."""

__version__ = "0.1.0"
