"""estate units

Revision ID: 0019
Revises: 0018

The estate's units (房号) as the office lists them: a visitor asking for a unit not on the
list is refused at registration (003 ch.3 §一). Empty: any unit is taken, as before.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('units',
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('unit')
    )


def downgrade() -> None:
    op.drop_table('units')
