"""Staff sessions: the server's record of each ops sign-in, so that it can end for good.

The cookie holds a random token; the table keeps only its SHA-256, with the member of staff, the
stamp of the password they signed in with, when it began, when it was last used (written at most
once a minute) and when it ended (signed out, idle, expired or a changed password).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('staff_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_name', sa.String(length=64), nullable=False),
    sa.Column('password_stamp', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_staff_sessions'))
    )


def downgrade():
    op.drop_table('staff_sessions')
