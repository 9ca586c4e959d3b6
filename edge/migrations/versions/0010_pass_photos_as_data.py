"""pass photos as data

Revision ID: 0010
Revises: 0009

A pass names its holder's photo by the SHA-256 of the stored picture (edge.photos), the
same name at the office and at every gate; ``photo_path`` stays for passes issued before.
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('photo_sha256', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.drop_column('photo_sha256')
