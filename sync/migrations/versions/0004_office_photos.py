"""office photos

Revision ID: 0004
Revises: 0003

A pass issued at the office names its holder's photo; the photo is kept in the database
(and so in its backup) and pulled by the gates with the pass.
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('photos',
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('jpeg', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.add_column('passes', sa.Column('photo_sha256', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('passes', 'photo_sha256')
    op.drop_table('photos')
