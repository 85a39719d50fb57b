"""CPU accounting from /proc: what each group of processes (voucherd, PostgreSQL, the load
generator, the floor clients) spent in a measured window, and what the rest of the machine did."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (field 3), or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return [stat[stat.index("(") + 1 : stat.rindex(")")], *stat[stat.rindex(")") + 2 :].split()]


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[12]) + int(fields[13])) / _TICKS


def _all_processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) is not None:
            yield int(entry.name), fields


def process_group(pgid: int) -> list[int]:
    return [pid for pid, fields in _all_processes() if int(fields[3]) == pgid]


def postgres_serving(url: str) -> Callable[[], list[int]]:
    """The PostgreSQL processes working for the database of ``url``: its backends and the
    server's shared ones (WAL writer, checkpointer...), not other databases' backends."""
    database = make_url(url).database or ""

    def pids() -> list[int]:
        found = []
        for pid, fields in _all_processes():
            if fields[0] != "postgres":
                continue
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            # A client backend's title is "postgres: <cluster>: <user> <database> <client> ..."
            serves_a_client = "[local]" in title or "(" in title
            if not serves_a_client or f" {database} " in title:
                found.append(pid)
        return found

    return pids


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return 0, 0
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass(frozen=True)
class CpuSample:
    at: float
    per_pid: dict[str, dict[int, float]]
    machine: tuple[int, int]

    def then(self, newer: CpuSample) -> CpuSample:
        """``newer``, still counting the processes that ended since this sample was taken."""
        per_pid = {
            name: {**self.per_pid.get(name, {}), **pids} for name, pids in newer.per_pid.items()
        }
        return CpuSample(newer.at, per_pid, newer.machine)

    def since(self, start: CpuSample) -> CpuUsage:
        wall = self.at - start.at
        groups = {
            name: {
                pid: seconds - start.per_pid.get(name, {}).get(pid, 0.0)
                for pid, seconds in pids.items()
                if seconds > 0  # 0: the process ended in the window; its time is unknown
            }
            for name, pids in self.per_pid.items()
        }
        busy = self.machine[0] - start.machine[0]
        total = self.machine[1] - start.machine[1]
        return CpuUsage(wall, groups, busy / total if total else float("nan"))


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds spent by each group of processes during a measured window."""

    wall: float
    per_pid: dict[str, dict[int, float]]
    machine_busy: float  # fraction of all cores

    def seconds(self, group: str) -> float:
        return sum(self.per_pid.get(group, {}).values())

    def describe(self, operations: int, unit: str) -> str:
        """E.g. ``CPU per request: voucherd 610 µs (1.21 cores: 0.62+0.59), ...``."""
        parts = []
        for group, pids in self.per_pid.items():
            total = sum(pids.values())
            per_op = 1e6 * total / operations if operations else float("nan")
            busy = sorted(
                (s / self.wall for s in pids.values() if s / self.wall >= 0.05), reverse=True
            )
            split = f": {'+'.join(f'{c:.2f}' for c in busy)}" if 1 < len(busy) <= 4 else ""
            parts.append(f"{group} {per_op:,.0f} µs ({total / self.wall:.2f} cores{split})")
        return (
            f"CPU per {unit}: {', '.join(parts)}; machine {self.machine_busy:.0%} busy, "
            f"{self.others:.2f} cores of it by other processes"
        )

    @property
    def others(self) -> float:
        """Cores busy with processes outside the groups: the noise of a shared machine."""
        ours = sum(sum(pids.values()) for pids in self.per_pid.values()) / self.wall
        return max(0.0, self.machine_busy * (os.cpu_count() or 1) - ours)


class CpuMeter:
    """Samples the CPU time of named groups of processes (this one, the server, PostgreSQL)."""

    def __init__(self, groups: Mapping[str, Callable[[], Iterable[int]]] | None = None) -> None:
        self.groups: dict[str, Callable[[], Iterable[int]]] = dict(groups or {})

    def add(self, name: str, pids: Callable[[], Iterable[int]]) -> None:
        self.groups[name] = pids

    def remove(self, name: str) -> None:
        self.groups.pop(name, None)

    def sample(self) -> CpuSample:
        per_pid = {
            name: {pid: _cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }
        return CpuSample(time.time(), per_pid, _machine_ticks())


def this_process() -> list[int]:
    return [os.getpid()]
