"""housekeeping indexes

Revision ID: 0007
Revises: 0006

What the housekeeping on the writer needs so that none of it walks a whole table: the
outbox's acknowledged rows by age (pruning), the alarms still waiting for an
acknowledgement by when their escalation falls due (the scan each second), and the
snapshots whose picture is still on disk (retention).
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_acked', ['acked_at'], unique=False, sqlite_where=sa.text('acked_at IS NOT NULL'))

    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.create_index('ix_alarms_awaiting_ack', ['priority', 'escalated_at', 'raised_at'], unique=False, sqlite_where=sa.text("acked_at IS NULL AND state != 'closed'"))

    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_snapshots_on_disk', ['id'], unique=False, sqlite_where=sa.text('deleted_at IS NULL AND path IS NOT NULL'))



def downgrade() -> None:
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_snapshots_on_disk', sqlite_where=sa.text('deleted_at IS NULL AND path IS NOT NULL'))

    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.drop_index('ix_alarms_awaiting_ack', sqlite_where=sa.text("acked_at IS NULL AND state != 'closed'"))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_acked', sqlite_where=sa.text('acked_at IS NOT NULL'))
