"""The office database (PostgreSQL). The office owns passes and slips; the gates own what
happened at the gate, which arrives here keyed by (node, epoch, seq), once."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

# An estate (小区). ``gates``: its gate ids; NULL only for the ``default`` site of an office
# from before sites, whose gates were never declared.
sites = Table(
    "sites",
    metadata,
    Column("site_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("gates", ARRAY(Text)),
    Column("created_at", Float, nullable=False),
    # which camera pictures its gates send here: off | alarms | all (sync.office.SNAPSHOTS),
    # and how long they are kept here
    Column("snapshots", Text, nullable=False, server_default="off"),
    Column("snapshot_days", Integer, nullable=False, server_default="30"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", Text, primary_key=True),
    Column("token_hash", Text, nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float),
    Column("revoked_at", Float),
    Column("clock_offset_s", Float),  # the gate's clock minus the office's, at its last push
    Column("flagged_at", Float),  # it sent a (epoch, seq) again with other content
    Column("site", Text, nullable=False, server_default="default"),
    Column("gates", ARRAY(Text)),  # the site's gates it serves; NULL: all of them
    Column("rotated_at", Float),  # its token was last replaced
)

# The office's own facts: ``log_id`` names this change log; a restore makes a new one
office_meta = Table(
    "office_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("name", Text, primary_key=True),
    Column("role", Text, nullable=False),  # clerk | admin | host
    Column("token_hash", Text, nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("password_hash", Text),  # argon2id, for the desk's login
    Column("password_set_at", Float),
    # a host's one unit (of one site): the visitors they may announce (sync.expected)
    Column("site", Text),
    Column("unit", Text),
)

passes = Table(
    "passes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("card_key", BigInteger, nullable=False, index=True),
    Column("card_hex", Text),
    Column("name", Text, nullable=False),
    Column("unit", Text),
    Column("id_hash", Text),
    Column("id_last4", Text),
    Column("valid_from", Float, nullable=False),
    Column("valid_until", Float),
    Column("status", Text, nullable=False),
    Column("status_reason", Text),
    Column("gates", Text),
    Column("daily_window", Text),
    Column("permit_no", Text),
    Column("deposit_fen", Integer),
    Column("fee_fen", Integer),
    Column("version", Integer, nullable=False),
    Column("issued_by", Text),
    Column("updated_by", Text),
    Column("issued_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("photo_sha256", Text),  # in ``photos``; the gates pull it with the pass
    Column("site", Text, nullable=False, server_default="default"),
)

# The estate's units (房号): a visitor asking for a unit not on the list is asked to check,
# then politely to leave (003 ch.3 §一). Pulled by the site's gates (entity ``unit``).
units = Table(
    "units",
    metadata,
    Column("site", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("site", "unit"),
)

# Visitors announced in advance (预约访客): the office (for a host) registers one with a time
# window and how many entries, and gives a code; the site's gates pull it (entity
# ``expected_visitor``) and admit the code inside its window, as many times as it allows.
expected_visitors = Table(
    "expected_visitors",
    metadata,
    Column("id", Text, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("site", Text, nullable=False),
    Column("host_unit", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("valid_from", Float, nullable=False),
    Column("valid_until", Float, nullable=False),
    Column("entries", Integer, nullable=False),
    Column("status", Text, nullable=False),  # active | cancelled
    Column("version", Integer, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Renovation permits (装修许可证): a unit's works by a company, for a period; suspended by a
# stop-work order until re-inspection, closed at completion. Pulled by the site's gates like
# passes (entity ``permit``): a worker pass names its permit (``passes.permit_no``).
permits = Table(
    "permits",
    metadata,
    Column("permit_no", Text, primary_key=True),
    Column("site", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("company", Text, nullable=False),
    Column("scope", Text),
    Column("valid_from", Float, nullable=False),
    Column("valid_until", Float),
    Column("status", Text, nullable=False),  # active | suspended | closed
    Column("status_reason", Text),
    Column("version", Integer, nullable=False),
    Column("issued_by", Text, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("updated_by", Text),
    Column("updated_at", Float, nullable=False),
)

# Holders' photos, by the SHA-256 of the stored JPEG (edge.photos): in the database, so the
# office's backup (pg_dump) has them, and a gate fetches each one once.
photos = Table(
    "photos",
    metadata,
    Column("sha256", Text, primary_key=True),
    Column("jpeg", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", Text, nullable=False),
)

# Camera pictures a site's gates sent (its ``snapshots`` setting), by the SHA-256 the gate's
# snapshot record names: the picture as taken, or ``reduced`` to fit the office's bound (then
# ``stored_sha256`` differs). Deleted after the site's ``snapshot_days``.
snapshots = Table(
    "snapshots",
    metadata,
    Column("sha256", Text, primary_key=True),
    Column("jpeg", LargeBinary, nullable=False),
    Column("stored_sha256", Text, nullable=False),
    Column("reduced", Boolean, nullable=False),
    Column("site", Text, nullable=False),
    Column("node_id", Text, nullable=False),
    Column("snapshot_id", Text, nullable=False),  # the gate's own id of its record
    Column("ref_kind", Text, nullable=False),  # event | alarm | slip | request
    Column("received_at", Float, nullable=False),
    Index("ix_snapshots_site_received", "site", "received_at"),
)

# Every change to what the office owns, in commit order: ids are allocated under a
# transaction-scoped advisory lock, so a gate reading "everything after N" can never skip
# a change that commits later with a smaller id (PostgreSQL sequences would allow it).
change_log = Table(
    "change_log",
    metadata,
    Column("change_id", BigInteger, primary_key=True, autoincrement=False),
    Column("entity", Text, nullable=False),  # pass
    Column("entity_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("op", Text, nullable=False),  # upsert | revoke
    Column("payload", JSONB, nullable=False),
    Column("committed_at", Float, nullable=False),
    Column("stamp", Text),  # random: a gate quotes its cursor's stamp back (see office.pull)
    # who may pull it: the nodes of ``site`` serving one of ``gates`` (NULL: any of its
    # gates); a node in the scope it had before (``was_*``) but not in this one gets a drop
    Column("site", Text),
    Column("gates", ARRAY(Text)),
    Column("was_site", Text),
    Column("was_gates", ARRAY(Text)),
)

# Every write at the office, by whom: passes, slips, photos, nodes, users
audit = Table(
    "audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("who", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", JSONB, nullable=False),
)

edge_events = Table(
    "edge_events",
    metadata,
    Column("node_id", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", Text, nullable=False, index=True),
    Column("ref", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    # partitioned by month of received_at (sync.partitions), so the key holds it too; a
    # (node, epoch, seq) arrives once by the push's own checks (office.apply_push)
    PrimaryKeyConstraint("node_id", "epoch", "seq", "received_at"),
)

edge_cursors = Table(
    "edge_cursors",
    metadata,
    Column("node_id", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("base", BigInteger, nullable=False),  # the epoch's first seq
    Column("contiguous_hwm", BigInteger, nullable=False),  # all of base..hwm are here
    Column("max_seen", BigInteger, nullable=False),
    # a seq of this epoch came again with other content: from here on the epoch takes
    # nothing more, and the gate sends the rest under a new epoch
    Column("closed_from", BigInteger),
    PrimaryKeyConstraint("node_id", "epoch"),
)

# Records the office can never store or apply (U+0000 in a text, a conflicting resend…):
# kept byte for byte beside the gate's epoch and seq, so nothing behind them waits
set_aside = Table(
    "set_aside",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False),
    Column("node_id", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),  # the line as it came, before any unescaping
    Index("ix_set_aside_node", "node_id", "epoch", "seq"),
)

anomalies = Table(
    "anomalies",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("node_id", Text),
    Column("kind", Text, nullable=False),  # integrity | used_after_revocation | ...
    Column("detail", Text, nullable=False),
)

slips = Table(
    "slips",
    metadata,
    Column("number", Text, primary_key=True),
    Column("unit", Text, nullable=False, index=True),
    Column("owner", Text, nullable=False),
    Column("bearer", Text, nullable=False),
    Column("authorisation", Text, nullable=False),
    Column("authorisation_detail", JSONB, nullable=False),
    Column("items", JSONB, nullable=False),
    Column("hazard_allowed", Integer, nullable=False),
    Column("valid_from", Float, nullable=False),
    Column("valid_until", Float, nullable=False),
    Column("approver", Text),
    Column("status", Text, nullable=False),  # issued | cancelled | released | rejected
    Column("version", Integer, nullable=False),
    Column("issued_by", Text, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("closed_at", Float),
    Column("closed_by", Text),
    Column("gate", Text),
    Column("node_id", Text),  # the gate that released or rejected it
    Column("notes", Text),
    Column("site", Text, nullable=False, server_default="default"),
)
