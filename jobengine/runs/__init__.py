"""Runs (DAG workflows): planned before anything is written, promoted where parents finish."""
