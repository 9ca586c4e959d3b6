"""door events

Revision ID: 0023
Revises: 0022

A gate's door or barrier contact, each change as it came, and whether a grant, a manual
opening or an exit request accounted for an opening: beside the access events, the gate's
own log shows tailgating and a barrier left up.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('door_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('gate', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('what', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('door_events', schema=None) as batch_op:
        batch_op.create_index('ix_door_events_gate_ts', ['gate', 'ts'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('door_events', schema=None) as batch_op:
        batch_op.drop_index('ix_door_events_gate_ts')
    op.drop_table('door_events')
