"""An export run as an operation: each step is one batch, stored as one result chunk."""

from __future__ import annotations

from voucherd.db.engine import Database
from voucherd.exports.schemas import ExportProgress, ExportSpec
from voucherd.exports.service import encode, next_batch
from voucherd.operations import steps
from voucherd.operations.steps import Run


def export_step(db: Database, run: Run) -> bool:
    """Export the next batch; True once the export is complete.

    The batch's rows, their CSV chunk, any publication of them and the new checkpoint are one
    transaction, so a resumed export neither repeats nor skips a row of what was committed.
    """
    spec = ExportSpec.from_parameters(run.tenant_id, run.actor, run.parameters)
    progress = ExportProgress.from_checkpoint(run.checkpoint)
    now = db.now()
    with db.unit_of_work() as session:
        batch = next_batch(session, spec, progress, now=now)
        steps.append_output(session, run, encode(spec, batch, header=not progress.started))
        after = batch.progress
        if batch.finished:
            steps.complete(
                session,
                run,
                now=now,
                done=after.done,
                result={
                    "media_type": "text/csv; charset=utf-8",
                    "filename": f"export-{spec.campaign_id}-{run.operation_id}.csv",
                    "rows": after.done,
                    "publication_id": after.publication_id,
                },
                entity_type="publication" if after.publication_id else None,
                entity_id=after.publication_id,
            )
        else:
            steps.advance(
                session,
                run,
                now=now,
                done=after.done,
                total=max(after.total or 0, after.done),
                checkpoint=after.to_checkpoint(),
            )
        session.commit()
    return batch.finished
