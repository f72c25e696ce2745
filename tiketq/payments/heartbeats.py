"""Workers' heartbeats: each worker's last round, for the ops page and /metrics."""

from __future__ import annotations

from datetime import datetime

from tiketq.extensions import db
from tiketq.payments.models import WorkerHeartbeat, utcnow


def record_heartbeat(
    worker_id: str, counts: dict[str, int], *, now: datetime | None = None
) -> WorkerHeartbeat:
    """Note that a worker finished a round, and what it did, for the ops page."""
    now = now or utcnow()
    beat = db.session.get(WorkerHeartbeat, worker_id)
    if beat is None:
        beat = WorkerHeartbeat(worker_id=worker_id, started_at=now)
        db.session.add(beat)
    beat.beat_at = now
    beat.last_round = dict(counts)
    db.session.commit()
    return beat
