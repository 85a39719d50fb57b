"""The rows an issue of a GIFT voucher writes, in minimal SQL: a voucher, its opening ledger
entry and its ``issued`` event. Shared by the raw floor (bench/issue.py) and the bare-framework
anchor (bench/anchor.py), so both write exactly what voucherd's issue writes."""

from __future__ import annotations

import json
from typing import Any

from voucherd.codes.generator import DEFAULT_SPEC
from voucherd.ids import new_ids, new_public_tokens

VALUE = 5000  # the campaign's default value, minor units
EVENT_DATA = json.dumps({"value": VALUE, "customer_ref": False})

INSERT_VOUCHER = """
INSERT INTO voucher (id, tenant_id, campaign_id, code, public_token, type, state, currency,
                     amount, balance, redeemed_quantity, created_at, updated_at)
VALUES (%(id)s, %(tenant)s, %(campaign)s, %(code)s, %(token)s, 'GIFT', 'ACTIVE', 'EUR',
        %(value)s, %(value)s, 0, now(), now())
"""
INSERT_LEDGER = """
INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at)
VALUES (%(tenant)s, %(id)s, %(value)s, 'ISSUE', now())
"""
INSERT_EVENT = """
INSERT INTO voucher_event (tenant_id, voucher_id, campaign_id, kind, actor, data, created_at)
VALUES (%(tenant)s, %(id)s, %(campaign)s, 'issued', %(actor)s, %(data)s::jsonb, now())
"""
ISSUE_IN_ONE_STATEMENT = f"""
WITH v AS ({INSERT_VOUCHER} RETURNING id),
     l AS (INSERT INTO ledger_entry (tenant_id, voucher_id, delta, kind, created_at)
           SELECT %(tenant)s, id, %(value)s, 'ISSUE', now() FROM v)
INSERT INTO voucher_event (tenant_id, voucher_id, campaign_id, kind, actor, data, created_at)
SELECT %(tenant)s, id, %(campaign)s, 'issued', %(actor)s, %(data)s::jsonb, now() FROM v
"""


def next_voucher(pending: list[tuple[str, str, str]], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the next voucher's id, code and page token, of voucherd's own shapes (so
    the indexes see the same keys), drawn a thousand at a time into ``pending``, outside any
    transaction."""
    if not pending:
        pending.extend(
            zip(
                new_ids("v", 1000),
                DEFAULT_SPEC.generate(1000),
                new_public_tokens(1000),
                strict=True,
            )
        )
    voucher_id, code, token = pending.pop()
    return {**params, "id": voucher_id, "code": code, "token": token}
