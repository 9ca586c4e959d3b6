"""office: sites (estates) and gate scopes, the office audit log

Revision ID: 0007
Revises: 0006

A property company runs several estates against one office: each node (guard-room PC)
belongs to one site and serves some of its gates, and each pass and slip to one site. A
gate pulls only the changes in its scope (``change_log.site``/``gates``), and a pass moved
out of its scope (``was_site``/``was_gates``) as a drop, so a stolen gate PC carries only
its own estate's cards. An office that had no sites keeps everything in ``default``.
Every office write is in ``audit``.
"""

import time

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    sites = op.create_table('sites',
    sa.Column('site_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('gates', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('site_id')
    )
    # gates NULL: the gates were never declared, so any gate id of its nodes is taken
    op.bulk_insert(sites, [{'site_id': 'default', 'name': '默认小区', 'gates': None,
                            'created_at': time.time()}])
    for table in ('nodes', 'passes', 'slips'):
        op.add_column(table, sa.Column('site', sa.Text(), nullable=False,
                                       server_default='default'))
    op.add_column('nodes', sa.Column('gates', postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column('nodes', sa.Column('rotated_at', sa.Float(), nullable=True))
    for column in ('site', 'was_site'):
        op.add_column('change_log', sa.Column(column, sa.Text(), nullable=True))
    for column in ('gates', 'was_gates'):
        op.add_column('change_log', sa.Column(column, postgresql.ARRAY(sa.Text()),
                                              nullable=True))
    op.execute("UPDATE change_log SET site = 'default', gates = CASE WHEN entity = 'pass' "
               "AND coalesce(payload ->> 'gates', '') <> '' "
               "THEN string_to_array(payload ->> 'gates', ',') END")
    op.create_table('audit',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('who', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('detail', postgresql.JSONB(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_audit_at', 'audit', ['at'])


def downgrade() -> None:
    op.drop_index('ix_audit_at', table_name='audit')
    op.drop_table('audit')
    for column in ('site', 'was_site', 'gates', 'was_gates'):
        op.drop_column('change_log', column)
    op.drop_column('nodes', 'rotated_at')
    op.drop_column('nodes', 'gates')
    for table in ('nodes', 'passes', 'slips'):
        op.drop_column(table, 'site')
    op.drop_table('sites')
