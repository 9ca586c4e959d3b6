"""indexes from the queries

Revision ID: 0013
Revises: 0012

Each index serves a query a person waits on, checked by EXPLAIN QUERY PLAN on a million
events in tests/test_query_plans.py:
- access events of a gate in a time range (the alarm's context, the gate's list filtered
  by gate): (gate, ts) finds the range instead of every event of the gate; it serves
  "gate = ?" alone too, so the (gate) index goes;
- passes of a unit (GET /api/v1/passes?unit=);
- visitors by their ID number's keyed hash, as passes already are (?id_number=);
- the access events that still carry a holder's name, oldest first: the names are removed
  after [privacy] holder_days, and this partial index holds only the ones still to do.
"""

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('access_events', schema=None) as batch_op:
        batch_op.drop_index('ix_access_events_gate')
        batch_op.create_index('ix_access_events_gate_ts', ['gate', 'ts'], unique=False)
        batch_op.create_index('ix_access_events_named', ['ts'], unique=False, sqlite_where=sa.text('holder IS NOT NULL'))
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.create_index('ix_passes_unit', ['unit'], unique=False)
    with op.batch_alter_table('visitors', schema=None) as batch_op:
        batch_op.create_index('ix_visitors_id_hash', ['id_hash'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('visitors', schema=None) as batch_op:
        batch_op.drop_index('ix_visitors_id_hash')
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.drop_index('ix_passes_unit')
    with op.batch_alter_table('access_events', schema=None) as batch_op:
        batch_op.drop_index('ix_access_events_named', sqlite_where=sa.text('holder IS NOT NULL'))
        batch_op.drop_index('ix_access_events_gate_ts')
        batch_op.create_index('ix_access_events_gate', ['gate'], unique=False)
