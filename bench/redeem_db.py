"""PostgreSQL's side of a redemption: voucherd's redemption use case without the server.

32 client processes (bench.floor's), each calling ``voucherd.redemptions.service.redeem`` (the
path a request without an Idempotency-Key takes: the lookup, then the one statement that spends
and records) on an autocommit ``Database`` of its own, taking 1 from a card drawn at random of
``--cards`` minted GIFT vouchers. No HTTP, no server, no guard: what PostgreSQL spends on a
redemption, which is what a change to the schema, a trigger or a statement moves.

It prints PostgreSQL's CPU per redemption and its ratio to the clients' CPU per redemption.
The clients do the same work whatever the schema, so the ratio cancels most of the guest's
drift in speed from run to run (its CPU per redemption moved by a third within an hour here):
compare variants by the ratio, runs interleaved. ``--setup FILE`` runs the SQL in FILE on the
bench database after the migrations (e.g. ``DROP TRIGGER webhook_voucher_event ON
voucher_event``), to measure a variant against the migrated schema. Every balance must still
equal its ledger's sum afterwards, or it exits 1 with no figures.

    python -m bench.redeem_db [--runs 3] [--clients 32] [--cards 20000] [--setup FILE]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any, Self

if __package__ in (None, ""):  # run as ``python bench/redeem_db.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.exc import SQLAlchemyError

from bench import common
from bench.redeem import BALANCE, _check_ledger, _new_cards, _wait_quiet
from voucherd.errors import DomainError
from voucherd.redemptions.schemas import RedeemRequest
from voucherd.redemptions.service import redeem


class _Client:
    """A client process's own ``Database`` (one connection), disposed of with the client
    (bench.floor's clients hold their connection in a ``with``)."""

    def __init__(self, url: str) -> None:
        self.db = common.open_database(url, pool_size=1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.db.dispose()


def connect(url: str) -> _Client:
    return _Client(url)


def redeem_one(conn: _Client, client: common.FloorClient) -> None:
    """One redemption of 1 from a card drawn at random, the native API's way."""
    draw = client.state.setdefault("random", random.Random(client.index))
    codes = client.params["codes"]
    body = RedeemRequest(code=codes[draw.randrange(len(codes))], amount=1)
    redeem(conn.db, client.params["caller"], body, show_voucher=False)


def main(argv: list[str] | None = None) -> int:
    command = common.parser(__doc__.split("\n\n")[0], seconds=8.0)
    command.add_argument("--clients", type=int, default=32, help="client processes")
    command.add_argument("--cards", type=int, default=20_000, help="cards to redeem from")
    command.add_argument("--setup", type=Path, help="SQL run on the database after migrating")
    args = command.parse_args(argv)
    setup = args.setup.read_text() if args.setup else None
    runs: list[list[float]] = []
    with common.bench_database(setup=setup) as url:
        tenant, campaign = common.make_gift_tenant(url, value=BALANCE)
        print(f"redeem_db: {common.machine_line(url)}")
        print(
            f"voucherd's redeem() in {args.clients} client processes on {args.cards:,} cards; "
            f"{args.seconds:g} s measured after {args.warmup:g} s warm-up"
            + (f"; after migrating: {args.setup}" if args.setup else "")
        )
        for run in range(1, args.runs + 1):
            _, codes = _new_cards(url, tenant, campaign, args.cards)
            _wait_quiet(url)
            params: dict[str, Any] = {"codes": codes, "caller": tenant.caller}
            result = common.run_postgres_floor(
                redeem_one,
                url,
                args,
                params,
                connect=connect,
                failures=(DomainError, SQLAlchemyError),
            )
            common.require(not result.errors, f"redeem() in clients: {dict(result.errors)}")
            ok, verdict = _check_ledger(url, None)
            common.require(ok, verdict)
            postgres = 1e6 * result.cpu.seconds("postgres") / result.transactions
            clients = 1e6 * result.cpu.seconds("floor clients") / result.transactions
            print(f"\nrun {run}: {result.rate:,.0f} redemptions/s")
            print(f"  {result.cpu.describe(result.transactions, 'redemption')}")
            print(f"  {verdict}")
            runs.append([result.rate, postgres, clients, postgres / clients, result.cpu.others])
    print()
    common.print_runs(
        ["redemptions/s", "postgres µs", "clients µs", "postgres/clients", "others"], runs
    )
    print("postgres/clients: compare schema variants by this, runs interleaved")
    return 0


if __name__ == "__main__":
    common.run(main)
