"""Metrics that grade a map: one module per family, each declaring its registry entries
(heatkit/metrics/registry.py)."""
