"""Reproducible benchmarks of voucherd against the raw PostgreSQL floor (see bench/README.md)."""
