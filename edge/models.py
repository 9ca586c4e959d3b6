"""The edge node's tables (SQLModel). Schema changes go through Alembic (edge/migrations).

Times are UNIX seconds (float, UTC): compared on the swipe path, so they stay numbers.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class Pass(SQLModel, table=True):
    """A credential: 临时出入证 temporary, 出入证 worker, resident's or staff card."""

    __tablename__ = "passes"

    id: str = Field(primary_key=True)
    kind: str
    card_key: int = Field(index=True)  # low 32 bits of the card ID (edge.cards)
    card_hex: str | None = None
    name: str
    unit: str | None = None
    id_hash: str | None = Field(default=None, index=True)  # keyed hash, never the number
    id_last4: str | None = None
    valid_from: float
    valid_until: float | None = None
    status: str = "active"  # active | revoked | confiscated
    status_reason: str | None = None
    gates: str | None = None  # comma-separated gate ids; NULL: every gate
    daily_window: str | None = None  # "07:00-19:00"; NULL: the kind's default
    permit_no: str | None = None  # worker: the unit's renovation permit (装修许可证)
    deposit_fen: int | None = None  # worker: ¥50 deposit, in fen
    fee_fen: int | None = None  # worker: ¥5 fee, in fen
    photo_path: str | None = None
    issued_at: float
    updated_at: float
    version: int = 1  # bumped on every change; sync's version guard


class AccessEvent(SQLModel, table=True):
    """One gate decision, as it was made (通行记录)."""

    __tablename__ = "access_events"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    ts: float = Field(index=True)
    gate: str = Field(index=True)
    reader: str | None = None
    direction: str | None = None
    decision: str  # grant | deny
    reason: str
    pass_id: str | None = None
    pass_kind: str | None = None
    card_key: int | None = None
    card_hex: str | None = None
    holder: str | None = None
    source: str  # serial | mqtt | api
    raw: str | None = None  # the frame, hex, for forensic replay
    read_age_ms: int | None = None  # read → decision
    stale: bool = False  # too old to act on: recorded, barrier not opened


class Outbox(SQLModel, table=True):
    """Everything bound for the office, numbered per node in the transaction that made it."""

    __tablename__ = "outbox"
    __table_args__ = {"sqlite_autoincrement": True}  # a sequence number is never reused

    seq: int | None = Field(default=None, primary_key=True)
    epoch: int
    kind: str
    ref: str
    payload: str  # JSON, unmasked: the office is entitled to it
    created_at: float
    acked_at: float | None = None


class NodeMeta(SQLModel, table=True):
    __tablename__ = "node_meta"

    key: str = Field(primary_key=True)
    value: str
