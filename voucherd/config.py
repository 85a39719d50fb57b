"""Settings: one object, read from the environment (``VOUCHERD_*``) or a ``.env`` file.

Nothing is read at import time; :func:`load_settings` is called by the CLI and by whoever builds
the app, so tests can hand ``create_app`` any settings they like.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOUCHERD_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./voucherd.db",
        description="sqlite:///path or postgresql://user@host/db",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_base_url: str = Field(
        default="",
        description=(
            "Base of links printed into messages and voucher objects (voucher pages, assets). "
            "Unset, it follows VOUCHERD_HOST and VOUCHERD_PORT (the address actually served)."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    db_pool_size: int = Field(default=20, ge=1, le=200)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_code_space_fill: float = Field(
        default=0.01,
        gt=0,
        le=0.5,
        description=(
            "Largest fraction of a code_config's space one campaign may fill. Keeps codes "
            "unguessable and collision retries rare."
        ),
    )
    max_bulk_count: int = Field(default=10_000_000, ge=1)
    key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long an API process trusts a verified key before asking the database again.",
    )
    operation_lease_seconds: float = Field(
        default=60.0,
        ge=1,
        description=(
            "How long a worker holds a long operation between two of its steps; an operation "
            "whose worker died is taken up by another this long after its last step."
        ),
    )
    order_mint_parallelism: int = Field(
        default=2,
        ge=1,
        le=16,
        description=(
            "Batches of one client order a worker mints at the same time on PostgreSQL, each "
            "on its own connection (the mint is bound by the database's CPU). 1 on SQLite."
        ),
    )

    voucherify_currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description=(
            "The currency of money campaigns created through the Voucherify face: Voucherify "
            "keeps one currency per project and never sends it, so voucherd takes it from here."
        ),
    )

    # Rate limits and guessing (voucherd.guard). Counts are per fixed window; tenants may
    # override the per-key, per-tenant and guessing numbers (PATCH /api/v1/tenant, rate_limits).
    guard_enabled: bool = Field(
        default=True,
        description="Rate limits and the guessing guard; false turns both off (benchmarks).",
    )
    rate_limit_window_seconds: int = Field(default=10, ge=1, le=3600)
    # A key is often shared by a whole till network (every till of a chain validating and
    # redeeming through one credential), so the per-key limit is set for that peak, not for one
    # client: 500/s sustained, well above a national chain's busiest hour (10,000 tills at one
    # validate + redeem a minute is ~330/s) and about what one API host serves, so it stops a
    # runaway loop or a leaked key without ever refusing an honest till. The tenant's limit is
    # the deployment's share for one tenant: four such keys at full speed.
    rate_limit_per_key: int = Field(
        default=5000, ge=1, description="Requests one API key may make per window (500/s)."
    )
    rate_limit_per_tenant: int = Field(
        default=20000,
        ge=1,
        description="Requests all of one tenant's keys may make per window (2,000/s).",
    )
    rate_limit_page_per_address: int = Field(
        default=100,
        ge=1,
        description="Voucher page requests one client address may make per window.",
    )
    rate_limit_sync_seconds: float = Field(
        default=0.2,
        ge=0,
        le=5,
        description=(
            "How often an API process adds its request counts to the shared counters (one "
            "UPDATE ... RETURNING); 0 writes every request through. Processes may together "
            "overshoot a limit by what they admit in this long."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For is believed; "
            "from anyone else the header is ignored and the connection's address counts."
        ),
    )
    guess_window_seconds: int = Field(default=3600, ge=60, le=7 * 86400)
    guess_slow_after: int = Field(
        default=50,
        ge=1,
        description="Failed code lookups per key or address in a window before it is slowed.",
    )
    guess_slow_seconds: float = Field(
        default=1.0, ge=0, le=3600, description="A slowed caller may look up one code this often."
    )
    guess_refuse_after: int = Field(
        default=200,
        ge=1,
        description="Failed code lookups per key or address in a window before lookups are refused.",
    )

    # Workers and delivery (voucherd.worker, voucherd.delivery).
    in_process_worker: bool = Field(
        default=False,
        description="Run a worker thread inside the API process (`voucherd serve` turns it on).",
    )
    worker_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How long an idle worker sleeps between polls."
    )
    delivery_lease_seconds: float = Field(
        default=60.0,
        ge=0.5,
        description=(
            "How long a worker holds a claimed delivery; a delivery whose worker died is sent "
            "again by another this long after the claim. Keep it well above the send timeout."
        ),
    )
    delivery_batch_size: int = Field(default=32, ge=1, le=1000)
    delivery_concurrency: int = Field(
        default=8, ge=1, le=256, description="Messages one worker sends at the same time."
    )
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_backoff_seconds: float = Field(
        default=10.0, gt=0, description="The first retry's delay; it doubles per failure."
    )
    delivery_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    delivery_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Connect and read timeout of one send to a provider."
    )
    allow_http_webhooks: bool = Field(
        default=False,
        description="Let event webhook endpoints be plain http URLs (for tests, never production).",
    )
    allow_loopback_webhooks: bool = Field(
        default=False,
        description=(
            "Let event webhook endpoints resolve to a loopback address (for tests); private, "
            "link-local and other non-public addresses are refused whatever this says."
        ),
    )
    webhook_max_attempts: int = Field(
        default=30,
        ge=1,
        le=1000,
        description=(
            "Tries of one event message before it is FAILED; with the delivery backoff (doubling, "
            "at most an hour apart) the default spans more than a day."
        ),
    )
    webhook_disable_after_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="An endpoint whose every attempt has failed for this long is disabled.",
    )
    twilio_base_url: str = Field(
        default="https://api.twilio.com", description="Base of Twilio's Messages API."
    )
    whatsapp_base_url: str = Field(
        default="https://graph.facebook.com/v21.0", description="Base of Meta's WhatsApp Cloud API."
    )
    smtp_ca_file: str | None = Field(
        default=None,
        description="Extra CA certificates (PEM) SMTP servers are verified against, for private CAs.",
    )

    # Observability (voucherd.observability).
    log_format: Literal["json", "console"] = Field(
        default="json",
        description="How `voucherd serve` and `voucherd worker` write logs: one JSON object a "
        "line, or readable text for a terminal.",
    )
    opentelemetry: bool = Field(
        default=False,
        description="Let FastAPI's own OpenTelemetry instrumentation trace and meter requests "
        "when the process has OpenTelemetry providers (opentelemetry-instrument, "
        "FASTAPI_OTEL_AUTO_CONFIGURE). Off by default: FastAPI then skips looking the global "
        "providers up on every request, some 5% of a redemption's CPU.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Where `voucherd worker` serves its own Prometheus metrics (on "
        "VOUCHERD_HOST); none by default.",
    )

    @field_validator("public_base_url", "twilio_base_url", "whatsapp_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or network") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _links_follow_the_served_address(self) -> Settings:
        # A fixed default sent every link to port 8000 whatever `serve --port` chose (issue 15).
        if not self.public_base_url:
            self.public_base_url = served_base_url(self.host, self.port)
        return self


def served_base_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches a server bound to ``host:port``.

    A wildcard bind (0.0.0.0, ::) is no address to link to; loopback is the one that surely
    answers; links meant for other machines need VOUCHERD_PUBLIC_BASE_URL set.
    """
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
