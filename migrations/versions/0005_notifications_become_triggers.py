"""Notifications become triggers: the inbox keeps retry state and wakes the worker.

The worker, not the notification URL, now applies notifications: each waiting row carries its
attempts, when it may be tried next and the last error. Refused bodies are stored truncated, with
their length and SHA-256. On PostgreSQL an insert of a waiting row notifies channel
`tiketq_inbox`, so that a listening worker starts at once instead of at its next poll.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

WAITING = "outcome IN ('received', 'failed') AND next_attempt_at IS NOT NULL"
REJECTED = "outcome IN ('bad_signature', 'status_mismatch', 'malformed')"


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('body_length', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('body_sha256', sa.String(length=64), nullable=True))
        batch_op.create_index(
            'ix_notifications_waiting', ['next_attempt_at'], unique=False,
            postgresql_where=sa.text(WAITING), sqlite_where=sa.text(WAITING),
        )
        batch_op.create_index(
            'ix_notifications_rejected', ['received_at'], unique=False,
            postgresql_where=sa.text(REJECTED), sqlite_where=sa.text(REJECTED),
        )
    # Rows a crash left half-applied under the old design wait for the worker like new ones.
    op.execute("UPDATE notifications SET next_attempt_at = received_at WHERE outcome = 'received'")

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            """
            CREATE FUNCTION notify_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('tiketq_inbox', '');
                RETURN NULL;
            END
            $$
            """
        )
        op.execute(
            """
            CREATE TRIGGER notifications_wake_worker
            AFTER INSERT ON notifications
            FOR EACH ROW WHEN (NEW.outcome = 'received')
            EXECUTE FUNCTION notify_inbox()
            """
        )


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER notifications_wake_worker ON notifications")
        op.execute("DROP FUNCTION notify_inbox()")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_rejected')
        batch_op.drop_index('ix_notifications_waiting')
        batch_op.drop_column('body_sha256')
        batch_op.drop_column('body_length')
        batch_op.drop_column('last_error')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
