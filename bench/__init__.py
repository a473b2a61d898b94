"""Benchmarks: each prints ratios against a baseline run in the same script, then one JSON line (see report.py)."""
