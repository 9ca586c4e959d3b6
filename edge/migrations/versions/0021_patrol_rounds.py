"""patrol rounds

Revision ID: 0021
Revises: 0020

Patrol tag reads (fixed readers, handhelds on MQTT, a patrol wand's download) and the
planned rounds, each judged once its time is up: done, incomplete or missed.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('patrol_reads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('checkpoint', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('guard', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('device', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('recorded_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('patrol_reads', schema=None) as batch_op:
        batch_op.create_index('ix_patrol_reads_at', ['at'], unique=False)
    op.create_table('patrol_rounds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('route', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('planned_at', sa.Float(), nullable=False),
    sa.Column('ends_at', sa.Float(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('read', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('missing', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('guards', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('alarm_id', sa.Integer(), nullable=True),
    sa.Column('judged_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('route', 'planned_at')
    )
    with op.batch_alter_table('patrol_rounds', schema=None) as batch_op:
        batch_op.create_index('ix_patrol_rounds_planned_at', ['planned_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('patrol_rounds', schema=None) as batch_op:
        batch_op.drop_index('ix_patrol_rounds_planned_at')
    op.drop_table('patrol_rounds')
    with op.batch_alter_table('patrol_reads', schema=None) as batch_op:
        batch_op.drop_index('ix_patrol_reads_at')
    op.drop_table('patrol_reads')
