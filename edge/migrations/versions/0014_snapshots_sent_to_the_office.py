"""snapshots sent to the office

Revision ID: 0014
Revises: 0013

A site may ask its gates for their camera pictures (sync.snapshots at the office):
``office_at`` is when the office took one (or refused it for good), and the partial index
holds the pictures still on disk and not yet sent, oldest first, so the sender finds the
next ones without reading the ones already sent. Pictures taken before this upgrade are
not yet sent: a site that asks gets the ones its gates still hold.
"""

from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_PENDING = "office_at IS NULL AND deleted_at IS NULL AND path IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('office_at', sa.Float(), nullable=True))
        batch_op.create_index('ix_snapshots_for_office', ['id'], unique=False,
                              sqlite_where=sa.text(_PENDING))


def downgrade() -> None:
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_snapshots_for_office', sqlite_where=sa.text(_PENDING))
        batch_op.drop_column('office_at')
