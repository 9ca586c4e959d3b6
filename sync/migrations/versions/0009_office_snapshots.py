"""office: camera pictures from the gates, by site

Revision ID: 0009
Revises: 0008

A site chooses whether its gates send their camera pictures here (``sites.snapshots``: off,
the default, as before; alarms; all) and how long they are kept (``snapshot_days``). The
pictures are rows, like holders' photos, so the office's backup has them.
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('sites', sa.Column('snapshots', sa.Text(), server_default='off',
                                     nullable=False))
    op.add_column('sites', sa.Column('snapshot_days', sa.Integer(), server_default='30',
                                     nullable=False))
    op.create_table('snapshots',
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('jpeg', sa.LargeBinary(), nullable=False),
    sa.Column('stored_sha256', sa.Text(), nullable=False),
    sa.Column('reduced', sa.Boolean(), nullable=False),
    sa.Column('site', sa.Text(), nullable=False),
    sa.Column('node_id', sa.Text(), nullable=False),
    sa.Column('snapshot_id', sa.Text(), nullable=False),
    sa.Column('ref_kind', sa.Text(), nullable=False),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_index('ix_snapshots_site_received', 'snapshots', ['site', 'received_at'])


def downgrade() -> None:
    op.drop_index('ix_snapshots_site_received', table_name='snapshots')
    op.drop_table('snapshots')
    op.drop_column('sites', 'snapshot_days')
    op.drop_column('sites', 'snapshots')
