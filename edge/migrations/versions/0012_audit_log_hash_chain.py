"""audit log hash chain

Revision ID: 0012
Revises: 0011

Each audit entry carries the hash of the one before it and its own (edge.audit), so an
entry edited or removed is found by `gatehouse audit verify`; and the table refuses UPDATE
and DELETE, so no code path, and nobody with the API, changes what it says. Entries from
before this revision keep NULL hashes: the chain starts after them.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    # (after the batch: a batch copies the table, and triggers would go with the old one)
    for verb in ('UPDATE', 'DELETE'):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
