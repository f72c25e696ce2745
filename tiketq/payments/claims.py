"""How worker jobs take their rows: one at a time, locked, each committed alone, none fatal.

Every claim is SELECT ... FOR UPDATE SKIP LOCKED, so workers on several machines share the work
through PostgreSQL and never do the same row twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from tiketq.extensions import db
from tiketq.payments.models import work_failed

log = logging.getLogger(__name__)


def claim_each(query: sa.Select[Any], limit: int) -> Iterator[Any]:
    """Yield up to `limit` rows, each locked alone; the caller commits each before the next.

    One row per claim: a commit releases every lock the transaction holds, so claiming a batch
    and committing row by row would hand the rest of the batch to other workers mid-way.
    """
    entity = query.column_descriptions[0]["entity"]
    done: list[Any] = []
    for _ in range(limit):
        narrowed = query.where(entity.id.not_in(done)) if done else query
        row = db.session.scalar(narrowed.limit(1).with_for_update(skip_locked=True))
        if row is None:
            db.session.rollback()
            return
        done.append(row.id)
        yield row


def each_isolated(
    job: str,
    query: sa.Select[Any],
    limit: int,
    work: Callable[[Any], object],
    on_failure: Callable[[Any, Exception], None],
) -> int:
    """Run `work` on each claimed row and commit it; a row that raises is set aside, not fatal.

    A lost database is the exception: it ends the job, which the next round runs again.
    """
    handled = 0
    for row in claim_each(query, limit):
        row_id = row.id
        handled += 1
        try:
            work(row)
            db.session.commit()
        except OperationalError:
            raise
        except Exception as exc:
            db.session.rollback()
            log.error("%s failed for row %s: %s", job, row_id, exc, exc_info=exc)
            work_failed.send(job, error=exc)
            on_failure(row_id, exc)
            db.session.commit()
    return handled
