"""How an operation is shown."""

from __future__ import annotations

from typing import Any, Literal

from voucherd.operations.models import COMPLETED, Operation

OperationStatusName = Literal["Processing", "Completed", "Failed"]


def operation_path(operation_id: str) -> str:
    return f"/api/v1/operations/{operation_id}"


def present_operation(operation: Operation) -> dict[str, Any]:
    result = operation.result
    downloadable = operation.status == COMPLETED and bool(result and "media_type" in result)
    return {
        "id": operation.id,
        "object": "operation",
        "token": operation.token,
        "kind": operation.kind,
        "status": operation.status,
        "progress": {"done": operation.done, "total": operation.total},
        "parameters": operation.parameters,
        "result": result,
        "result_url": f"{operation_path(operation.id)}/result" if downloadable else None,
        "entity_type": operation.entity_type,
        "entity_id": operation.entity_id,
        # While Processing, why the last attempt failed (it will be retried); once Failed, why.
        "error": operation.last_error if operation.status != COMPLETED else None,
        "attempts": operation.attempts,
        "created_at": operation.created_at,
        "updated_at": operation.updated_at,
        "finished_at": operation.finished_at,
    }
