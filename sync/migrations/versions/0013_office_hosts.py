"""office: hosts who announce their own visitors

Revision ID: 0013
Revises: 0012

A user with the role ``host`` is a resident (or a tenant company) of one unit of one
site: with their token they announce visitors for that unit only, and see and cancel only
those. Clerks and admins have neither column.
"""

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('users', sa.Column('site', sa.Text(), nullable=True))
    op.add_column('users', sa.Column('unit', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('users', 'unit')
    op.drop_column('users', 'site')
