"""cameras: snapshots

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('camera', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('gate', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ref_kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ref_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('event_ts', sa.Float(), nullable=False),
    sa.Column('captured_at', sa.Float(), nullable=True),
    sa.Column('age_ms', sa.Integer(), nullable=True),
    sa.Column('stale', sa.Boolean(), nullable=False),
    sa.Column('deleted_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshots_event_ts'), ['event_ts'], unique=False)
        batch_op.create_index(batch_op.f('ix_snapshots_ref_id'), ['ref_id'], unique=False)

    with op.batch_alter_table('access_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('snapshot_id', sa.Integer(), nullable=True))

    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('snapshot_id', sa.Integer(), nullable=True))

    with op.batch_alter_table('goods_slips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('snapshot_id', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('goods_slips', schema=None) as batch_op:
        batch_op.drop_column('snapshot_id')

    with op.batch_alter_table('alarms', schema=None) as batch_op:
        batch_op.drop_column('snapshot_id')

    with op.batch_alter_table('access_events', schema=None) as batch_op:
        batch_op.drop_column('snapshot_id')

    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_snapshots_ref_id'))
        batch_op.drop_index(batch_op.f('ix_snapshots_event_ts'))

    op.drop_table('snapshots')
