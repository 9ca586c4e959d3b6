"""alarm deadlines

Revision ID: 0016
Revises: 0015

A help request's stages and their due times (``[alarms.deadlines]``: a complaint reported
within 1 h and answered within 2 h, an urgent repair on site within 15 min): one row per
stage, met when the alarm reaches it, overdue (and escalated) when the time passed first.
Alarms raised before this upgrade have none.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

_WAITING = "met_at IS NULL AND overdue_at IS NULL"


def upgrade() -> None:
    op.create_table('alarm_deadlines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alarm_id', sa.Integer(), nullable=False),
    sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('due_at', sa.Float(), nullable=False),
    sa.Column('met_at', sa.Float(), nullable=True),
    sa.Column('overdue_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alarm_deadlines', schema=None) as batch_op:
        batch_op.create_index('ix_alarm_deadlines_alarm_id', ['alarm_id'], unique=False)
        batch_op.create_index('ix_alarm_deadlines_waiting', ['due_at'], unique=False,
                              sqlite_where=sa.text(_WAITING))


def downgrade() -> None:
    with op.batch_alter_table('alarm_deadlines', schema=None) as batch_op:
        batch_op.drop_index('ix_alarm_deadlines_waiting', sqlite_where=sa.text(_WAITING))
        batch_op.drop_index('ix_alarm_deadlines_alarm_id')
    op.drop_table('alarm_deadlines')
