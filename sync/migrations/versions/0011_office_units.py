"""office: the estates' units

Revision ID: 0011
Revises: 0010

Each site's list of units (房号), pulled by its gates (change-log entity ``unit``): a
visitor asking for a unit not on it is refused at registration (003 ch.3 §一).
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('units',
    sa.Column('site', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('site', 'unit')
    )


def downgrade() -> None:
    op.drop_table('units')
