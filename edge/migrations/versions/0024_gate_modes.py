"""gate modes

Revision ID: 0024
Revises: 0023

A gate held open (a fire) or locked (a robbery) by the control room, with why, by whom and
until when; a gate with no row is normal. Kept across restarts: a locked gate stays locked.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gate_modes',
    sa.Column('gate', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('until', sa.Float(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('set_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('set_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('gate')
    )


def downgrade() -> None:
    op.drop_table('gate_modes')
