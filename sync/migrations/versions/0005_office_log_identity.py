"""office: the change log's identity, records set aside, closed epochs, gate clocks

Revision ID: 0005
Revises: 0004

A restored (or re-created) office reuses change ids the gates' cursors passed: the log
gets an identity (``office_meta.log_id``, new at every restore) and each change a random
``stamp`` a gate quotes back, so a gate notices either way and pulls from the start.
Records the office can never store are set aside with their raw bytes instead of wedging
a gate's push; an epoch whose sequence numbers came back with other content is closed
from that seq (the gate carries on in a new one); a gate's clock offset is kept for the
anomaly checks.
"""

import secrets

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table('office_meta',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.bulk_insert(meta, [{'key': 'log_id', 'value': secrets.token_hex(8)}])
    op.add_column('change_log', sa.Column('stamp', sa.Text(), nullable=True))
    op.add_column('edge_cursors', sa.Column('closed_from', sa.BigInteger(), nullable=True))
    op.add_column('nodes', sa.Column('clock_offset_s', sa.Float(), nullable=True))
    op.add_column('nodes', sa.Column('flagged_at', sa.Float(), nullable=True))
    op.create_table('set_aside',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.Column('node_id', sa.Text(), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_set_aside_node', 'set_aside', ['node_id', 'epoch', 'seq'])


def downgrade() -> None:
    op.drop_index('ix_set_aside_node', table_name='set_aside')
    op.drop_table('set_aside')
    op.drop_column('nodes', 'flagged_at')
    op.drop_column('nodes', 'clock_offset_s')
    op.drop_column('edge_cursors', 'closed_from')
    op.drop_column('change_log', 'stamp')
    op.drop_table('office_meta')
