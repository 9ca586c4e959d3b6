"""fault notices

Revision ID: 0022
Revises: 0021

故障通知单: faults found on rounds, numbered, received by the duty officer and closed by the
repair team; the open ones, oldest first, for the handover.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fault_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('place', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('photo_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('round_id', sa.Integer(), nullable=True),
    sa.Column('reported_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reported_at', sa.Float(), nullable=False),
    sa.Column('received_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('received_at', sa.Float(), nullable=True),
    sa.Column('closed_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('closed_at', sa.Float(), nullable=True),
    sa.Column('repair_notes', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('fault_notices', schema=None) as batch_op:
        batch_op.create_index('ix_fault_notices_open', ['reported_at'], unique=False,
                              sqlite_where=sa.text('closed_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('fault_notices', schema=None) as batch_op:
        batch_op.drop_index('ix_fault_notices_open', sqlite_where=sa.text('closed_at IS NULL'))
    op.drop_table('fault_notices')
