"""key loans

Revision ID: 0015
Revises: 0014

The guard room's key cabinet (``keys``) and its loan register (``key_loans``: 钥匙借用登记):
who took which key, signed, until when, returned and counted by whom, and, for a
contractor's key, the room inspected before the loan is crossed off (edge.keys).
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('keys',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('contractor', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('responsible', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('retired_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('key_loans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('borrower', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('borrower_kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('company', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('signature_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('approved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('lent_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('lent_at', sa.Float(), nullable=False),
    sa.Column('due_at', sa.Float(), nullable=False),
    sa.Column('returned_at', sa.Float(), nullable=True),
    sa.Column('returned_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('returned_count', sa.Integer(), nullable=True),
    sa.Column('inspected_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('inspected_at', sa.Float(), nullable=True),
    sa.Column('inspection_notes', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('lost_at', sa.Float(), nullable=True),
    sa.Column('lost_count', sa.Integer(), nullable=True),
    sa.Column('closed_at', sa.Float(), nullable=True),
    sa.Column('overdue_alarm_id', sa.Integer(), nullable=True),
    sa.Column('notes', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('key_loans', schema=None) as batch_op:
        batch_op.create_index('ix_key_loans_key_id', ['key_id'], unique=False)
        batch_op.create_index('ix_key_loans_lent_at', ['lent_at'], unique=False)
        batch_op.create_index('ix_key_loans_open', ['due_at'], unique=False,
                              sqlite_where=sa.text('closed_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('key_loans', schema=None) as batch_op:
        batch_op.drop_index('ix_key_loans_open', sqlite_where=sa.text('closed_at IS NULL'))
        batch_op.drop_index('ix_key_loans_lent_at')
        batch_op.drop_index('ix_key_loans_key_id')
    op.drop_table('key_loans')
    op.drop_table('keys')
