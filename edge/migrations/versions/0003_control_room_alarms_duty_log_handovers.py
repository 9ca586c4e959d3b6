"""control room: alarms, duty log, handovers

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alarm_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alarm_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alarm_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alarm_log_alarm_id'), ['alarm_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarm_log_at'), ['at'], unique=False)

    op.create_table('alarms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('location', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('floor', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('room', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('gate', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('notes', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('route_to', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('raised_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('raised_at', sa.Float(), nullable=False),
    sa.Column('last_active_at', sa.Float(), nullable=False),
    sa.Column('cleared_at', sa.Float(), nullable=True),
    sa.Column('acked_at', sa.Float(), nullable=True),
    sa.Column('acked_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('shelved_until', sa.Float(), nullable=True),
    sa.Column('shelved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('shelve_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('dispatched_to', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('dispatched_at', sa.Float(), nullable=True),
    sa.Column('dispatched_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('resolution_notes', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('resolved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('resolved_at', sa.Float(), nullable=True),
    sa.Column('closed_at', sa.Float(), nullable=True),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('escalated_at', sa.Float(), nullable=True),
    sa.Column('checklist', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uid')
    )
    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alarms_raised_at'), ['raised_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarms_source'), ['source'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarms_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_alarms_type'), ['type'], unique=False)

    op.create_table('duty_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('alarm_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('duty_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duty_log_at'), ['at'], unique=False)

    op.create_table('emergency_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alarm_id', sa.Integer(), nullable=False),
    sa.Column('cause', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('responsible', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('remedial', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('preventive', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('results', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('results_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('results_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('alarm_id')
    )
    op.create_table('handovers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shift', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('shift_start', sa.Float(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('report', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('report_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('override_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('override_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('outgoing_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('outgoing_at', sa.Float(), nullable=True),
    sa.Column('incoming_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('incoming_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('handovers')
    op.drop_table('emergency_records')
    with op.batch_alter_table('duty_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_duty_log_at'))

    op.drop_table('duty_log')
    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alarms_type'))
        batch_op.drop_index(batch_op.f('ix_alarms_state'))
        batch_op.drop_index(batch_op.f('ix_alarms_source'))
        batch_op.drop_index(batch_op.f('ix_alarms_raised_at'))

    op.drop_table('alarms')
    with op.batch_alter_table('alarm_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alarm_log_at'))
        batch_op.drop_index(batch_op.f('ix_alarm_log_alarm_id'))

    op.drop_table('alarm_log')
