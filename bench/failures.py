"""How a benchmark gives up: a run that saw an answer it did not expect measured something else."""

from __future__ import annotations


class BenchFailed(Exception):
    """An answer, a row count or a ledger other than the benchmark expected: whatever the run
    measured, it was not the path it meant to measure, so it prints no figures to compare."""


def require(ok: bool, what: str) -> None:
    """Stop the benchmark (exit status 1, no ratio printed) unless ``ok``."""
    if not ok:
        raise BenchFailed(what)
