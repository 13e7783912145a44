"""`ollama-probe-exporter compare`: many rounds of probes, or Prometheus' record of them, as a
comparison of models with sample counts, confidence intervals and a verdict per pair."""
