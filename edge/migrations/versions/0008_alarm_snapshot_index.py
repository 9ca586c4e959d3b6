"""alarm snapshot index

Revision ID: 0008
Revises: 0007

Snapshot retention asks, for each chunk of pictures, which of them an open alarm refers to;
this index answers that per picture instead of reading every open alarm.
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.create_index('ix_alarms_snapshot', ['snapshot_id'], unique=False, sqlite_where=sa.text('snapshot_id IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.drop_index('ix_alarms_snapshot', sqlite_where=sa.text('snapshot_id IS NOT NULL'))
