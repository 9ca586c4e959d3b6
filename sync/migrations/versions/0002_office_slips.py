"""office slips

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('slips',
    sa.Column('number', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('owner', sa.Text(), nullable=False),
    sa.Column('bearer', sa.Text(), nullable=False),
    sa.Column('authorisation', sa.Text(), nullable=False),
    sa.Column('authorisation_detail', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('items', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('hazard_allowed', sa.Integer(), nullable=False),
    sa.Column('valid_from', sa.Float(), nullable=False),
    sa.Column('valid_until', sa.Float(), nullable=False),
    sa.Column('approver', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('issued_by', sa.Text(), nullable=False),
    sa.Column('issued_at', sa.Float(), nullable=False),
    sa.Column('closed_at', sa.Float(), nullable=True),
    sa.Column('closed_by', sa.Text(), nullable=True),
    sa.Column('gate', sa.Text(), nullable=True),
    sa.Column('node_id', sa.Text(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('number')
    )
    op.create_index(op.f('ix_slips_unit'), 'slips', ['unit'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_slips_unit'), table_name='slips')
    op.drop_table('slips')
