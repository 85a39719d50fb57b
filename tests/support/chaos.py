"""Helpers of the chaos test: a private PostgreSQL cluster that may be crashed at will, a real
``voucherd serve`` process in front of it, and clients that retry one ``Idempotency-Key`` until
they get a definitive answer.

The cluster is private so that restarting it harms nobody else's tests (the shared server on
5432 is never touched). It runs with ``fsync=off``: an immediate-mode restart kills the server
processes, not the machine, so everything PostgreSQL wrote is still in the kernel's page cache
when crash recovery replays the WAL; what an fsync protects against (power loss) is not part of
this fault, and skipping it keeps the test fast on a shared, noisy CI box. ``synchronous_commit``
stays on, so a COMMIT is acknowledged only once its WAL record has been written.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def _postgres_bin() -> Path:
    """VOUCHERD_CHAOS_PG_BIN, else Debian's PostgreSQL 15, else what pg_config names."""
    if os.environ.get("VOUCHERD_CHAOS_PG_BIN"):
        return Path(os.environ["VOUCHERD_CHAOS_PG_BIN"])
    debian = Path("/usr/lib/postgresql/15/bin")
    pg_config = shutil.which("pg_config")
    if debian.exists() or pg_config is None:
        return debian
    found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    return Path(found.stdout.strip()) if found.returncode == 0 else debian


PG_BIN = _postgres_bin()
REQUIRE_PG = os.environ.get("VOUCHERD_REQUIRE_POSTGRES") == "1"
# One redemption that has had no definitive answer for this long is a stuck client: fail.
GIVE_UP_SECONDS = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_postgres() -> str | None:
    """Why a private cluster cannot be made here, or None when it can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"{PG_BIN / tool} not found (set VOUCHERD_CHAOS_PG_BIN to PostgreSQL's bin/)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not installed"
    return None


@dataclass
class PrivateCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1:``port``, its socket in its own directory."""

    root: Path
    port: int
    restarts: list[float] = field(default_factory=list)  # seconds each restart took

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def _pg_ctl(self, action: str, *extra: str) -> None:
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            *extra,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB"
        )
        self._pg_ctl("start", "-o", options)

    def restart_immediately(self) -> None:
        """Crash-stop (SIGQUIT: no checkpoint, clients cut off) and start again with recovery."""
        began = time.monotonic()
        self._pg_ctl("restart", "-m", "immediate")
        self.restarts.append(time.monotonic() - began)

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "immediate")

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "server.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    root = Path(tempfile.mkdtemp(prefix="voucherd-chaos-pg-"))
    try:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = PrivateCluster(root, free_port())
        cluster._run(
            "initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "--no-sync",
            "-E", "UTF8", "--locale", "C",
        )  # fmt: skip
        cluster.start()
        try:
            yield cluster
        finally:
            try:
                cluster.stop()
            except subprocess.CalledProcessError:
                pass  # already down: nothing to stop
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class ServedVoucherd:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def served_voucherd(
    database_url: str, workdir: Path, env: dict[str, str]
) -> Iterator[ServedVoucherd]:
    """``voucherd serve --no-worker`` as its own process, as production runs it."""
    port = free_port()
    log = workdir / "voucherd.log"
    executable = Path(sys.executable).parent / "voucherd"  # the test's own venv's command
    launcher = [str(executable)] if executable.exists() else [sys.executable, "-m", "voucherd"]
    command = [*launcher, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
    full_env = {**os.environ, "VOUCHERD_DATABASE_URL": database_url, **env}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=workdir
        )
    served = ServedVoucherd(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"voucherd exited with {process.returncode}:\n{served.log_tail()}"
                )
            try:
                if httpx.get(f"{served.base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"voucherd did not answer /healthz:\n{served.log_tail()}")
            time.sleep(0.2)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@dataclass(frozen=True)
class Planned:
    key: str
    code: str
    amount: int


@dataclass(frozen=True)
class Answer:
    """The definitive answer one planned redemption got: 201 (with the redemption) or a 4xx."""

    planned: Planned
    status: int
    redemption_id: str | None
    amount: int | None
    code: str | None
    replayed: bool


@dataclass
class Tally:
    """What the clients saw along the way, under a lock (several threads add to it)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    in_flight: int = 0  # 409 idempotency_key_in_flight: the first try of the key still running
    server_errors: list[str] = field(default_factory=list)  # 5xx other than 503
    stuck: list[str] = field(default_factory=list)
    done: int = 0

    def saw(self, status: int, text: str) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status >= 500 and status != 503:
                self.server_errors.append(f"{status}: {text[:300]}")


def redeem_until_answered(
    client: httpx.Client, headers: dict[str, str], planned: Planned, tally: Tally
) -> Answer | None:
    """POST the redemption, retrying the SAME Idempotency-Key on connection errors, 503, 429 and
    409 in-flight, until an answer that settles it (201, or a refusal); None if stuck."""
    body = {"code": planned.code, "amount": planned.amount, "order": {"reference": planned.key}}
    request_headers = {**headers, "Idempotency-Key": planned.key}
    began = time.monotonic()
    pause = 0.02
    while time.monotonic() - began < GIVE_UP_SECONDS:
        try:
            response = client.post("/api/v1/redemptions", json=body, headers=request_headers)
        except httpx.TransportError as exc:
            with tally.lock:
                tally.transport_errors[type(exc).__name__] += 1
                tally.retries += 1
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            continue
        tally.saw(response.status_code, response.text)
        try:
            payload = response.json()
        except ValueError:  # not JSON (a proxy's or uvicorn's own error page): judged by status
            payload = {}
        retry = (
            response.status_code in (503, 429)
            or response.status_code >= 500
            or (response.status_code == 409 and payload.get("code") == "idempotency_key_in_flight")
        )
        if retry:
            with tally.lock:
                tally.retries += 1
                tally.in_flight += response.status_code == 409
            # Sooner than Retry-After (1 s) on purpose: retries that land while PostgreSQL is
            # still down or recovering are the harsher test.
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            continue
        with tally.lock:
            tally.done += 1
        if response.status_code == 201:
            return Answer(
                planned, 201, payload["id"], payload["amount"], None,
                response.headers.get("Idempotent-Replayed") == "true",
            )  # fmt: skip
        return Answer(planned, response.status_code, None, None, payload.get("code"), False)
    with tally.lock:
        tally.stuck.append(planned.key)
    return None
