"""Indexes that keep every page, scrape and worker job flat in the number of payments; retention.

Each query of the dashboard, /metrics and the worker's claims reads an index over the rows it
wants: partial indexes for the small hot sets (open, flagged, pending, dead, not yet purged), plain
ones for the recent ranges (a day of payments, what changed since the last audit). Two full indexes
that nothing reads any more give way to partial ones.

The purge empties old raw bodies and outbox payloads instead of deleting the rows; the new
columns say when. maintenance_runs remembers audit and purge passes.

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction, so that a
deployment with millions of rows keeps taking payments while they build. A build that fails
leaves an INVALID index behind: drop it (DROP INDEX CONCURRENTLY name) and upgrade again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

OPEN = "status IN ('pending', 'processing')"
UNAPPLIED = (
    "outcome IN ('bad_signature', 'status_mismatch', 'malformed', 'unknown_order', 'failed')"
)
REJECTED = "outcome IN ('bad_signature', 'status_mismatch', 'malformed')"

# (name, table, columns, partial index condition or None)
INDEXES = [
    ('ix_payments_created_at', 'payments', ['created_at'], None),
    ('ix_payments_updated_at', 'payments', ['updated_at'], None),
    ('ix_refunds_updated_at', 'refunds', ['updated_at'], None),
    ('ix_payments_open_created', 'payments', ['created_at'], OPEN),
    ('ix_payments_open_expiry', 'payments', ['expires_at'], OPEN),
    ('ix_payments_review', 'payments', ['updated_at'], 'needs_review'),
    ('ix_payments_last_checked', 'payments', ['last_checked_at'], 'last_checked_at IS NOT NULL'),
    ('ix_payment_events_reconcile', 'payment_events', ['created_at'], "source = 'reconcile'"),
    (
        'ix_payment_events_success',
        'payment_events',
        ['id'],
        "to_status = 'success' AND (from_status IS NULL OR from_status <> 'success')",
    ),
    ('ix_notifications_unapplied', 'notifications', ['received_at'], UNAPPLIED),
    (
        'ix_notifications_body_kept',
        'notifications',
        ['received_at'],
        "body_dropped_at IS NULL AND outcome IN ('applied', 'duplicate')",
    ),
    ('ix_outbox_undispatched', 'outbox', ['id'], 'dispatched_at IS NULL'),
    (
        'ix_outbox_payload_kept',
        'outbox',
        ['dispatched_at'],
        'dispatched_at IS NOT NULL AND payload_dropped_at IS NULL',
    ),
    ('ix_deliveries_dead', 'deliveries', ['created_at'], "status = 'dead'"),
    ('ix_deliveries_delivered', 'deliveries', ['delivered_at'], "status = 'delivered'"),
]
# Replaced: the unapplied index holds every rejected row, the undispatched one every waiting
# message; nothing reads notifications or the outbox by time over all rows.
REPLACED = [
    ('ix_notifications_received_at', 'notifications', ['received_at'], None),
    ('ix_notifications_rejected', 'notifications', ['received_at'], REJECTED),
    ('ix_outbox_dispatched_at', 'outbox', ['dispatched_at'], None),
]


def _create(name, table, columns, where):
    condition = {} if where is None else {
        'postgresql_where': sa.text(where), 'sqlite_where': sa.text(where)
    }
    op.create_index(
        name, table, columns, unique=False, postgresql_concurrently=True, if_not_exists=True,
        **condition,
    )


def _drop(name, table):
    op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body_dropped_at', sa.DateTime(timezone=True)))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload_dropped_at', sa.DateTime(timezone=True)))
    op.create_table(
        'maintenance_runs',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('job', sa.String(length=20), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('summary', sa.JSON().with_variant(
            postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_runs')),
    )
    op.create_index('ix_maintenance_runs_job', 'maintenance_runs', ['job', 'started_at'])
    with op.get_context().autocommit_block():
        for index in INDEXES:
            _create(*index)
        for name, table, _columns, _where in REPLACED:
            _drop(name, table)


def downgrade():
    with op.get_context().autocommit_block():
        for index in REPLACED:
            _create(*index)
        for name, table, _columns, _where in INDEXES:
            _drop(name, table)
    op.drop_index('ix_maintenance_runs_job', table_name='maintenance_runs')
    op.drop_table('maintenance_runs')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('payload_dropped_at')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('body_dropped_at')
