"""A payment's own finish_url: where the traveller goes back to TiketQ after paying.

Nullable: payments without one, and every payment made before, use FINISH_URL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('finish_url', sa.String(length=2048), nullable=True))


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('finish_url')
