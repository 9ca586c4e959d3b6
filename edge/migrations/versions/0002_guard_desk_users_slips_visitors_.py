"""guard desk: users, slips, visitors, confiscations, audit

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('confiscations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pass_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('gate', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('confiscations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_confiscations_pass_id'), ['pass_id'], unique=False)

    op.create_table('goods_slips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('bearer', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('authorisation', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('authorisation_detail', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('items', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('hazard_allowed', sa.Boolean(), nullable=False),
    sa.Column('valid_from', sa.Float(), nullable=False),
    sa.Column('valid_until', sa.Float(), nullable=False),
    sa.Column('approver', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('issued_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('issued_at', sa.Float(), nullable=False),
    sa.Column('closed_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('closed_at', sa.Float(), nullable=True),
    sa.Column('gate', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('notes', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('goods_slips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_goods_slips_issued_at'), ['issued_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_goods_slips_unit'), ['unit'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('revoked_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_token_hash'), ['token_hash'], unique=False)

    op.create_table('visitors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('id_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('id_last4', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('host_unit', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('plate', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('card_key', sa.Integer(), nullable=True),
    sa.Column('pass_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('gate', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('registered_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('registered_at', sa.Float(), nullable=False),
    sa.Column('confirmed_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('confirmed_how', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('entered_at', sa.Float(), nullable=True),
    sa.Column('exited_at', sa.Float(), nullable=True),
    sa.Column('exited_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('visitors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visitors_registered_at'), ['registered_at'], unique=False)

    with op.batch_alter_table('access_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('notes', sqlmodel.sql.sqltypes.AutoString(), nullable=True))

    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issued_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.drop_column('updated_by')
        batch_op.drop_column('issued_by')

    with op.batch_alter_table('access_events', schema=None) as batch_op:
        batch_op.drop_column('notes')
        batch_op.drop_column('by')

    with op.batch_alter_table('visitors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visitors_registered_at'))

    op.drop_table('visitors')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_token_hash'))

    op.drop_table('users')
    with op.batch_alter_table('goods_slips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_goods_slips_unit'))
        batch_op.drop_index(batch_op.f('ix_goods_slips_issued_at'))

    op.drop_table('goods_slips')
    with op.batch_alter_table('confiscations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_confiscations_pass_id'))

    op.drop_table('confiscations')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
