"""Notifications inbox, outbox, and the receipt and review fields on payments.

Every Midtrans notification is stored before it is applied; messages to other services are
written in the same transaction as the change that causes them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 07:15:13.265196

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('raw_body', sa.Text(), nullable=False),
    sa.Column('order_id', sa.String(length=64), nullable=True),
    sa.Column('transaction_status', sa.String(length=32), nullable=True),
    sa.Column('status_code', sa.String(length=8), nullable=True),
    sa.Column('gross_amount', sa.String(length=32), nullable=True),
    sa.Column('signature_ok', sa.Boolean(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=True),
    sa.Column('payment_id', sa.Uuid(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.String(length=255), nullable=True),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_notifications_payment_id_payments'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_dedupe_key'), ['dedupe_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_payment_id'), ['payment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_received_at'), ['received_at'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('payment_id', sa.Uuid(), nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_outbox_payment_id_payments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('event_id', name=op.f('uq_outbox_event_id')),
    sa.UniqueConstraint('payment_id', 'event_type', name='uq_outbox_payment_event')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_dispatched_at'), ['dispatched_at'], unique=False)

    with op.batch_alter_table('payment_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notification_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_index(batch_op.f('ix_payment_events_notification_id'), ['notification_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_payment_events_notification_id_notifications'), 'notifications', ['notification_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('payments', schema=None) as batch_op:
        # Server defaults fill the rows that exist already.
        batch_op.add_column(sa.Column('payment_details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('needs_review', sa.Boolean(), nullable=False, server_default=sa.false()))



def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('needs_review')
        batch_op.drop_column('payment_details')

    with op.batch_alter_table('payment_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_payment_events_notification_id_notifications'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_payment_events_notification_id'))
        batch_op.drop_column('notification_id')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_dispatched_at'))

    op.drop_table('outbox')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_received_at'))
        batch_op.drop_index(batch_op.f('ix_notifications_payment_id'))
        batch_op.drop_index(batch_op.f('ix_notifications_order_id'))
        batch_op.drop_index(batch_op.f('ix_notifications_dedupe_key'))

    op.drop_table('notifications')
