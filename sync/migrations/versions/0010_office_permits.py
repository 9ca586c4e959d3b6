"""office: renovation permits

Revision ID: 0010
Revises: 0009

A unit's renovation permit (装修许可证), issued, suspended (停工整顿), resumed and closed at
the office, and pulled by its site's gates (change-log entity ``permit``), which deny a
worker whose permit is suspended or closed.
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('permits',
    sa.Column('permit_no', sa.Text(), nullable=False),
    sa.Column('site', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('company', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=True),
    sa.Column('valid_from', sa.Float(), nullable=False),
    sa.Column('valid_until', sa.Float(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('issued_by', sa.Text(), nullable=False),
    sa.Column('issued_at', sa.Float(), nullable=False),
    sa.Column('updated_by', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('permit_no')
    )


def downgrade() -> None:
    op.drop_table('permits')
