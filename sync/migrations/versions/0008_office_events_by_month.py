"""office: edge_events partitioned by month

Revision ID: 0008
Revises: 0007

One partition per calendar month (UTC) of ``received_at``, so a company lets go of old
months by detaching them (sync.partitions) instead of deleting rows one by one, and a
month's report and the event list read that month's partitions. The primary key takes
``received_at`` (a partitioned table's keys must hold its partition key); that a gate's
(node, epoch, seq) arrives once is kept by the push itself, under its epoch's lock, as it
always was (sync.office.apply_push). The rows there are copied over; a large office's
upgrade takes as long as copying its table once.
"""

from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_FIELD = ("(CASE kind WHEN 'access_event' THEN 'ts' WHEN 'alarm' THEN 'at' "
          "WHEN 'confiscation' THEN 'at' WHEN 'slip_released' THEN 'closed_at' "
          "WHEN 'slip_rejected' THEN 'closed_at' END)")
EVENT_AT = (f"(CASE WHEN jsonb_typeof(payload -> {_FIELD}) = 'number' "
            f"THEN (payload -> {_FIELD})::numeric END)")
COLUMNS = "node_id, epoch, seq, kind, ref, payload, sha256, received_at"


def _month(year: int, month: int) -> None:
    start = datetime(year, month, 1, tzinfo=UTC).timestamp()
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp()
    op.execute(f"CREATE TABLE edge_events_{year:04d}_{month:02d} PARTITION OF edge_events "
               f"FOR VALUES FROM ({start!r}) TO ({end!r})")


def _indexes() -> None:
    op.create_index('ix_edge_events_kind', 'edge_events', ['kind'])
    op.create_index('ix_edge_events_newest', 'edge_events',
                    ['received_at', 'node_id', 'epoch', 'seq'])
    op.execute(f"CREATE INDEX ix_edge_events_event_at ON edge_events ({EVENT_AT}) "
               f"WHERE {EVENT_AT} IS NOT NULL")


def upgrade() -> None:
    for index in ('ix_edge_events_kind', 'ix_edge_events_received_at', 'ix_edge_events_newest',
                  'ix_edge_events_event_at'):
        op.execute(f"DROP INDEX IF EXISTS {index}")
    op.execute("ALTER TABLE edge_events RENAME TO edge_events_unpartitioned")
    op.execute("ALTER TABLE edge_events_unpartitioned RENAME CONSTRAINT edge_events_pkey "
               "TO edge_events_unpartitioned_pkey")
    op.execute("""
        CREATE TABLE edge_events (
            node_id text NOT NULL, epoch bigint NOT NULL, seq bigint NOT NULL,
            kind text NOT NULL, ref text NOT NULL, payload jsonb NOT NULL,
            sha256 text NOT NULL, received_at double precision NOT NULL,
            CONSTRAINT edge_events_pkey PRIMARY KEY (node_id, epoch, seq, received_at)
        ) PARTITION BY RANGE (received_at)""")
    op.execute("CREATE TABLE edge_events_default PARTITION OF edge_events DEFAULT")
    now = datetime.now(UTC)
    nxt = (now.year + now.month // 12, now.month % 12 + 1)
    held = op.get_bind().execute(sa.text(
        "SELECT DISTINCT extract(year FROM d)::int, extract(month FROM d)::int FROM ("
        "SELECT to_timestamp(received_at) AT TIME ZONE 'UTC' AS d FROM edge_events_unpartitioned"
        " WHERE received_at BETWEEN 946684800 AND 4102444800) AS r"  # the years 2000-2099
    )).all()
    for year, month in sorted({(now.year, now.month), nxt, *map(tuple, held)}):
        _month(year, month)
    op.execute(f"INSERT INTO edge_events ({COLUMNS}) "
               f"SELECT {COLUMNS} FROM edge_events_unpartitioned")
    op.execute("DROP TABLE edge_events_unpartitioned")
    _indexes()


def downgrade() -> None:
    op.execute("ALTER TABLE edge_events RENAME TO edge_events_partitioned")
    op.execute("""
        CREATE TABLE edge_events (
            node_id text NOT NULL, epoch bigint NOT NULL, seq bigint NOT NULL,
            kind text NOT NULL, ref text NOT NULL, payload jsonb NOT NULL,
            sha256 text NOT NULL, received_at double precision NOT NULL)""")
    op.execute(f"INSERT INTO edge_events ({COLUMNS}) "
               f"SELECT {COLUMNS} FROM edge_events_partitioned")
    op.execute("DROP TABLE edge_events_partitioned")
    op.execute("ALTER TABLE edge_events ADD CONSTRAINT edge_events_pkey "
               "PRIMARY KEY (node_id, epoch, seq)")
    op.create_index('ix_edge_events_received_at', 'edge_events', ['received_at'])
    _indexes()
