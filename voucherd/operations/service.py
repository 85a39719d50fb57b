"""Operations as their callers see them: start one (inside another use case), get, list, and
download the result.

A feature that has long work to do (an export, later bulk orders and distributions) calls
:func:`start_operation` inside its own use case's transaction, so the operation exists exactly
when the request that asked for it succeeded; a worker runs it later (see runner.py).
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from voucherd.auth.caller import Caller
from voucherd.db.engine import Database
from voucherd.errors import Conflict, ErrorCode, InvalidInput, NotFound
from voucherd.ids import new_id
from voucherd.operations.models import (
    COMPLETED,
    FAILED,
    PROCESSING,
    Operation,
    OperationResultChunk,
)
from voucherd.pagination import Page, page_of


@dataclass(frozen=True)
class ResultDownload:
    """An operation's stored result, decompressed chunk by chunk as it is sent."""

    filename: str
    media_type: str
    size: int
    chunks: Iterator[bytes]


def start_operation(
    session: Session,
    *,
    tenant_id: str,
    kind: str,
    parameters: dict[str, Any],
    actor: str | None,
    now: datetime,
    total: int | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> Operation:
    """A new operation, due at once, written in the caller's transaction.

    ``entity_type`` and ``entity_id`` name what it works on when that exists from the start
    (a client order is readable while its vouchers are minted, as Vista's resolve shows).
    """
    operation_id = new_id("op")
    session.execute(
        insert(Operation).values(
            id=operation_id,
            tenant_id=tenant_id,
            # Opaque and unguessable, like Vista's tokens; addressing still checks the tenant.
            token=secrets.token_urlsafe(24),
            kind=kind,
            status=PROCESSING,
            actor=actor,
            parameters=parameters,
            done=0,
            total=total,
            entity_type=entity_type,
            entity_id=entity_id,
            attempts=0,
            run_after=now,
            created_at=now,
            updated_at=now,
        )
    )
    return find_operation(session, tenant_id, operation_id)


def record_completed(
    session: Session,
    *,
    tenant_id: str,
    kind: str,
    entity_type: str,
    entity_id: str,
    actor: str | None,
    now: datetime,
    parameters: dict[str, Any] | None = None,
) -> Operation:
    """An operation that finished inside the caller's transaction (creating a client).

    Work that is quick enough to do at once still gets a token when a face promises one for
    everything it changes (Vista), so callers resolve it like any other.
    """
    operation_id = new_id("op")
    session.execute(
        insert(Operation).values(
            id=operation_id,
            tenant_id=tenant_id,
            token=secrets.token_urlsafe(24),
            kind=kind,
            status=COMPLETED,
            actor=actor,
            parameters=parameters or {},
            done=1,
            total=1,
            result={},
            entity_type=entity_type,
            entity_id=entity_id,
            attempts=0,
            run_after=now,
            created_at=now,
            updated_at=now,
            finished_at=now,
        )
    )
    return find_operation(session, tenant_id, operation_id)


MAX_RESOLVE = 100


def resolve_tokens(db: Database, caller: Caller, tokens: Sequence[str]) -> list[Operation | None]:
    """Many operations by token (or id) in one read, in the order asked; None for a token that
    names no operation of the caller's tenant, which is what another tenant's token is too."""
    if len(tokens) > MAX_RESOLVE:
        raise InvalidInput(f"at most {MAX_RESOLVE} tokens at once", field="tokens")
    wanted = list(dict.fromkeys(tokens))
    if not wanted:
        return []
    with db.unit_of_work(write=False) as session:
        found = list(
            session.scalars(
                select(Operation).where(
                    Operation.tenant_id == caller.tenant_id,
                    or_(Operation.token.in_(wanted), Operation.id.in_(wanted)),
                )
            )
        )
    by_ref = {o.token: o for o in found} | {o.id: o for o in found}
    return [by_ref.get(token) for token in tokens]


def find_operation(session: Session, tenant_id: str, ref: str) -> Operation:
    """An operation by id or token, within the tenant; another tenant's is not found."""
    operation = session.scalar(
        select(Operation).where(
            Operation.tenant_id == tenant_id, or_(Operation.id == ref, Operation.token == ref)
        )
    )
    if operation is None:
        raise NotFound("no such operation", field="operation")
    return operation


def get_operation(db: Database, caller: Caller, ref: str) -> Operation:
    with db.unit_of_work(write=False) as session:
        return find_operation(session, caller.tenant_id, ref)


def list_operations(
    db: Database,
    caller: Caller,
    *,
    kind: str | None = None,
    status: str | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[Operation]:
    query = select(Operation).where(Operation.tenant_id == caller.tenant_id)
    if kind is not None:
        query = query.where(Operation.kind == kind)
    if status is not None:
        query = query.where(Operation.status == status)
    if cursor:
        query = query.where(Operation.id < cursor)
    with db.unit_of_work(write=False) as session:
        rows = list(session.scalars(query.order_by(Operation.id.desc()).limit(limit + 1)))
    return page_of(rows, limit, rows[limit - 1].id if len(rows) > limit else None)


def open_result(db: Database, caller: Caller, ref: str) -> ResultDownload:
    """The result of a completed operation, ready to stream.

    The chunks are read one short transaction each while the answer is sent, so a download of
    hundreds of megabytes holds neither a connection nor more than one chunk in memory. That is
    consistent because a completed operation's chunks never change again.
    """
    with db.unit_of_work(write=False) as session:
        operation = find_operation(session, caller.tenant_id, ref)
    if operation.status == PROCESSING:
        raise Conflict(
            "the operation is still Processing; its result is not ready yet",
            field="operation",
            code=ErrorCode.OPERATION_PROCESSING,
        )
    if operation.status == FAILED:
        raise Conflict(
            f"the operation Failed and has no result: {operation.last_error}",
            field="operation",
            code=ErrorCode.OPERATION_FAILED,
        )
    assert operation.status == COMPLETED
    result = operation.result or {}
    if "media_type" not in result:
        raise NotFound("this operation has no downloadable result", field="operation")
    return ResultDownload(
        filename=str(result.get("filename") or f"{operation.id}.bin"),
        media_type=str(result["media_type"]),
        size=int(result.get("size", 0)),
        chunks=_read_chunks(db, operation, int(result.get("chunks", 0))),
    )


def _read_chunks(db: Database, operation: Operation, count: int) -> Iterator[bytes]:
    for seq in range(count):
        with db.unit_of_work(write=False) as session:
            data = session.scalar(
                select(OperationResultChunk.data).where(
                    OperationResultChunk.operation_id == operation.id,
                    OperationResultChunk.tenant_id == operation.tenant_id,
                    OperationResultChunk.seq == seq,
                )
            )
        if data is None:  # a completed result lost a chunk: never send a silently short file
            raise RuntimeError(f"operation {operation.id} lacks result chunk {seq}")
        yield zlib.decompress(data)
