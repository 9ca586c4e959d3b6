"""office user passwords

Revision ID: 0003
Revises: 0002

Clerks log in to the office desk with a password (argon2id); tokens stay for scripts.
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('users', sa.Column('password_hash', sa.Text(), nullable=True))
    op.add_column('users', sa.Column('password_set_at', sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column('users', 'password_set_at')
    op.drop_column('users', 'password_hash')
