"""office: indexes for the monthly report and the event list's pages

Revision ID: 0006
Revises: 0005

``ix_edge_events_event_at``: when a counted record happened (its time field where that
is a JSON number), so a month's report reads that month's records, not every month the
office kept. The expression is sync.reports.EVENT_AT, written out: PostgreSQL uses the
index only for a query with the same expression (tests/test_office_report.py checks the
plan). Partial: the kinds not counted, and times that are no number, stay out of it; and
the planner reads no statistics of a partial index's expression, which keeps the report's
plan an index scan into a hash aggregate (why: sync.reports, above EVENT_AT).

``ix_edge_events_newest``: ``GET /api/v1/events`` pages newest first by (received_at,
node_id, epoch, seq), keyset, read backwards along this index.
"""

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_FIELD = ("(CASE kind WHEN 'access_event' THEN 'ts' WHEN 'alarm' THEN 'at' "
          "WHEN 'confiscation' THEN 'at' WHEN 'slip_released' THEN 'closed_at' "
          "WHEN 'slip_rejected' THEN 'closed_at' END)")
EVENT_AT = (f"(CASE WHEN jsonb_typeof(payload -> {_FIELD}) = 'number' "
            f"THEN (payload -> {_FIELD})::numeric END)")


def upgrade() -> None:
    op.execute(f"CREATE INDEX ix_edge_events_event_at ON edge_events ({EVENT_AT}) "
               f"WHERE {EVENT_AT} IS NOT NULL")
    op.create_index('ix_edge_events_newest', 'edge_events',
                    ['received_at', 'node_id', 'epoch', 'seq'])


def downgrade() -> None:
    op.drop_index('ix_edge_events_newest', table_name='edge_events')
    op.execute("DROP INDEX ix_edge_events_event_at")
