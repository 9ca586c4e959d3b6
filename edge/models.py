"""The edge node's tables (SQLModel). Schema changes go through Alembic (edge/migrations).

Times are UNIX seconds (float, UTC): compared on the swipe path, so they stay numbers.
"""

from __future__ import annotations

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class Pass(SQLModel, table=True):
    """A credential: 临时出入证 temporary, 出入证 worker, resident's or staff card."""

    __tablename__ = "passes"

    id: str = Field(primary_key=True)
    kind: str
    card_key: int = Field(index=True)  # low 32 bits of the card ID (edge.cards)
    card_hex: str | None = None
    name: str
    unit: str | None = Field(default=None, index=True)
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
    photo_path: str | None = None  # before photos were data: a file named by the CLI
    photo_sha256: str | None = None  # the holder's photo in edge.photos' store
    issued_at: float
    updated_at: float
    version: int = 1  # bumped on every change; sync's version guard
    issued_by: str | None = None
    updated_by: str | None = None  # who last changed its status
    # local | office. An office pass's version is the office's alone: the gate never bumps
    # it, and a status the gate set (confiscated, revoked) an office change never undoes
    origin: str = "local"


class AccessEvent(SQLModel, table=True):
    """One gate decision, as it was made (通行记录)."""

    __tablename__ = "access_events"
    __table_args__ = (
        # a gate's events in a time range: the alarm's context, the list filtered by gate
        Index("ix_access_events_gate_ts", "gate", "ts"),
        # the events whose holder's name is still to be removed ([privacy] holder_days)
        Index("ix_access_events_named", "ts", sqlite_where=text("holder IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    ts: float = Field(index=True)
    gate: str
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
    by: str | None = None  # the guard, for a manual override
    notes: str | None = None  # the override's reason
    snapshot_id: int | None = None


class Outbox(SQLModel, table=True):
    """Everything bound for the office, numbered per node in the transaction that made it."""

    __tablename__ = "outbox"
    __table_args__ = (
        # the push worker's "what is left": found without walking the acknowledged rows
        Index("ix_outbox_unacked", "seq", sqlite_where=text("acked_at IS NULL")),
        # pruning: the acknowledged rows by age (edge.housekeeping)
        Index("ix_outbox_acked", "acked_at", sqlite_where=text("acked_at IS NOT NULL")),
        {"sqlite_autoincrement": True},  # a sequence number is never reused
    )

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


class User(SQLModel, table=True):
    """A person who uses the local API; the bearer token is kept only as its hash."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    role: str  # guard | control | admin
    token_hash: str = Field(index=True)
    created_at: float
    revoked_at: float | None = None
    # argon2id, for the console's login; None: this user has only the bearer token
    password_hash: str | None = None
    password_set_at: float | None = None


class GoodsSlip(SQLModel, table=True):
    """物品放行条: a goods release slip, serially numbered, released once at a gate."""

    __tablename__ = "goods_slips"

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True)
    unit: str = Field(index=True)
    owner: str
    bearer: str
    authorisation: str  # in_person | written | company
    authorisation_detail: str | None = None  # JSON: delegate, moving time, seal, signer
    items: str  # JSON list of {name, qty, hazard}
    hazard_allowed: bool = False
    valid_from: float
    valid_until: float
    approver: str | None = None
    status: str = "issued"  # issued | released | rejected | cancelled (expired: by time)
    issued_by: str
    issued_at: float = Field(index=True)
    closed_by: str | None = None  # who released, rejected or cancelled it
    closed_at: float | None = None
    gate: str | None = None
    notes: str | None = None  # discrepancies at release, the reason for a reject or cancel
    snapshot_id: int | None = None
    version: int = 1  # the office's version of it (slips issued at the office)
    origin: str = "local"  # local | office


class Visitor(SQLModel, table=True):
    """来访: a visitor registered at the gate, admitted once the host confirms."""

    __tablename__ = "visitors"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    id_hash: str | None = Field(default=None, index=True)  # keyed hash, never the number
    id_last4: str | None = None
    host_unit: str
    purpose: str | None = None
    plate: str | None = None
    card_key: int | None = None  # a temporary card lent for the visit
    pass_id: str | None = None  # the temporary pass made for that card
    gate: str | None = None
    registered_by: str
    registered_at: float = Field(index=True)
    confirmed_by: str | None = None  # the guard who took the host's confirmation
    confirmed_how: str | None = None  # intercom | phone | in_person
    entered_at: float | None = None
    exited_at: float | None = None
    exited_by: str | None = None
    expected_id: str | None = None  # announced in advance: the announcement it came on


class FaultNotice(SQLModel, table=True):
    """故障通知单: a fault found on a round (or anywhere), numbered, handed to the duty
    officer, who receives it, and closed by the repair team with the time."""

    __tablename__ = "fault_notices"
    __table_args__ = (
        Index("ix_fault_notices_open", "reported_at", sqlite_where=text("closed_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True)  # GZ-<year>-<n>, serial per gate node
    place: str
    category: str
    description: str
    photo_sha256: str | None = None
    round_id: int | None = None  # the patrol round it was found on
    reported_by: str
    reported_at: float
    received_by: str | None = None  # the duty officer
    received_at: float | None = None
    closed_by: str | None = None  # the repair team's person
    closed_at: float | None = None
    repair_notes: str | None = None


class DoorEvent(SQLModel, table=True):
    """A gate's door or barrier contact changed (edge.door): ``opened`` (a grant, a manual
    opening or an exit request accounted for it), ``forced`` (none did), ``closed``; and
    ``exit_request`` (the request-to-exit button)."""

    __tablename__ = "door_events"
    __table_args__ = (Index("ix_door_events_gate_ts", "gate", "ts"),)

    id: int | None = Field(default=None, primary_key=True)
    gate: str
    ts: float
    what: str


class Notification(SQLModel, table=True):
    """A piece of news for a channel off the box (edge.notify): queued in the transaction
    that made it, then ``sent``, ``summarised`` (sent in a flood's summary) or ``dropped``
    (stale). One per (ref, channel, event, level): an alarm announced again is not news."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ux_notifications_once", "ref", "channel", "event", "level", unique=True),
        Index("ix_notifications_queued", "state", "channel"),
        Index("ix_notifications_alarm", "alarm_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ref: str  # alarm:<id> | visitor:<id>
    alarm_id: int | None = None
    channel: str
    event: str  # raised | escalated | resolved | visitor
    level: int  # the escalation level it tells of
    priority: int
    title: str
    body: str
    unit: str | None = None  # a host's unit, for a channel whose URL has {unit}
    queued_at: float
    state: str  # queued | sent | summarised | dropped
    attempts: int
    sent_at: float | None = None  # or dropped at
    last_error: str | None = None  # the last failure, or why it was dropped


class GateMode(SQLModel, table=True):
    """A gate not in its normal mode (edge.modes): held open or locked, until when (None:
    until cancelled), why and by whom."""

    __tablename__ = "gate_modes"

    gate: str = Field(primary_key=True)
    mode: str  # held_open | locked
    until: float | None = None
    reason: str
    set_by: str
    set_at: float


class PatrolRead(SQLModel, table=True):
    """A patrol tag read: at a fixed reader or a handheld (MQTT), or downloaded from a patrol
    wand (巡更棒); ``checkpoint`` is None for a tag no checkpoint has (kept, counted)."""

    __tablename__ = "patrol_reads"

    id: int | None = Field(default=None, primary_key=True)
    tag: str
    checkpoint: str | None = None
    guard: str | None = None
    device: str | None = None
    source: str  # mqtt | api | wand
    at: float = Field(index=True)
    recorded_at: float


class PatrolRound(SQLModel, table=True):
    """A planned round, judged once its time is up: done, incomplete (checkpoints missed) or
    missed (none read)."""

    __tablename__ = "patrol_rounds"
    __table_args__ = (UniqueConstraint("route", "planned_at"),)

    id: int | None = Field(default=None, primary_key=True)
    route: str
    planned_at: float = Field(index=True)
    ends_at: float
    status: str  # done | incomplete | missed
    read: str  # JSON: the checkpoints read in time, in the order read
    missing: str  # JSON: the checkpoints not read
    guards: str | None = None  # who read them
    alarm_id: int | None = None
    judged_at: float


class ExpectedVisitor(SQLModel, table=True):
    """预约访客: a visitor the office announced for a host's unit, with a time window and a
    number of entries; the code admits them here inside it (edge.visitors.arrive)."""

    __tablename__ = "expected_visitors"

    id: str = Field(primary_key=True)
    code: str = Field(unique=True)
    host_unit: str
    name: str
    category: str
    valid_from: float = Field(index=True)
    valid_until: float
    entries: int
    used: int = 0  # the entries made here (the gate's own count; the office's version keeps it)
    status: str  # active | cancelled
    version: int


class Unit(SQLModel, table=True):
    """A unit (房号) of the estate, from the office's list: a visitor asking for one not on
    it is refused at registration. No list held: any unit is taken."""

    __tablename__ = "units"

    unit: str = Field(primary_key=True)


class Permit(SQLModel, table=True):
    """装修许可证: a unit's renovation permit, issued by the office and pulled here. A worker
    pass names it (``passes.permit_no``); the gate denies the worker while it is suspended
    (停工整顿) and once it is closed or its period has ended (edge.decision)."""

    __tablename__ = "permits"

    permit_no: str = Field(primary_key=True)
    unit: str
    company: str
    scope: str | None = None
    valid_from: float
    valid_until: float | None = None
    status: str  # active | suspended | closed
    status_reason: str | None = None
    version: int
    updated_at: float


class Rectification(SQLModel, table=True):
    """整改通知单: work found outside its permit's scope, to be put right by a deadline; closed
    once the unit is re-inspected and found in order (003 §七)."""

    __tablename__ = "rectifications"
    __table_args__ = (
        Index("ix_rectifications_open", "deadline", sqlite_where=text("closed_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True)  # ZG-<year>-<n>, serial per gate node
    unit: str
    permit_no: str | None = None
    issue: str  # what is wrong, what is to be done
    deadline: float
    issued_by: str
    issued_at: float
    closed_at: float | None = None
    closed_by: str | None = None
    inspected_by: str | None = None
    notes: str | None = None


class AlarmDeadline(SQLModel, table=True):
    """A help request's stage and when it is due (000 §八.10, §八.15: a complaint answered
    within 2 h, an urgent repair on site within 15 min): met when the alarm reaches it,
    overdue when the time passed first (edge.alarms.deadlines_due)."""

    __tablename__ = "alarm_deadlines"
    __table_args__ = (
        # the stages still to be met and not yet overdue, soonest first: the ticker's look
        Index(
            "ix_alarm_deadlines_waiting",
            "due_at",
            sqlite_where=text("met_at IS NULL AND overdue_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    alarm_id: int = Field(index=True)
    stage: str  # acknowledged | dispatched | resolved
    due_at: float
    met_at: float | None = None
    overdue_at: float | None = None  # the time passed first: escalated then


class Key(SQLModel, table=True):
    """钥匙柜: a key (or a bunch, or another item lent: an umbrella, a tool) in the
    guard room's cabinet, by the code written on it (钥匙单位编码)."""

    __tablename__ = "keys"

    id: str = Field(primary_key=True)
    label: str  # as people say it: 5栋1203 入户门
    kind: str  # unit | public | item
    unit: str | None = None
    quantity: int = 1
    # a contractor's key goes only to its responsible person, in person (003 §六)
    contractor: str | None = None
    responsible: str | None = None
    created_by: str
    created_at: float
    retired_at: float | None = None  # no longer lent (the lock was changed, the key gone)


class KeyLoan(SQLModel, table=True):
    """钥匙借用登记: a key lent, signed for, returned, counted, crossed off (消项)."""

    __tablename__ = "key_loans"
    __table_args__ = (
        # the loans still open, oldest due first: the overdue check and "keys out"
        Index("ix_key_loans_open", "due_at", sqlite_where=text("closed_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(index=True)
    quantity: int
    borrower: str
    borrower_kind: str  # owner | sales | staff | contractor | other
    company: str | None = None
    phone: str
    reason: str
    signature_sha256: str  # the borrower's signature, a picture (drawn or photographed)
    approved_by: str | None = None  # a supervisor, for a borrower the rules do not admit
    lent_by: str
    lent_at: float = Field(index=True)
    due_at: float
    returned_at: float | None = None  # back in the cabinet, counted
    returned_by: str | None = None  # the receiver (接收人)
    returned_count: int | None = None
    inspected_by: str | None = None  # a contractor's: the room inspected before closing
    inspected_at: float | None = None
    inspection_notes: str | None = None
    lost_at: float | None = None  # reported lost: the lock is to be changed
    lost_count: int | None = None
    closed_at: float | None = None  # crossed off the register
    overdue_alarm_id: int | None = None
    notes: str | None = None


class Confiscation(SQLModel, table=True):
    """予以没收: a pass taken at the gate; the office must hear of it."""

    __tablename__ = "confiscations"

    id: int | None = Field(default=None, primary_key=True)
    pass_id: str = Field(index=True)
    gate: str | None = None
    reason: str
    by: str
    at: float


class AuditEntry(SQLModel, table=True):
    """Who saw personal data unmasked, and who changed what through the API."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(index=True)
    by: str
    action: str
    subject: str | None = None
    prev_hash: str | None = None  # the entry before's hash (edge.audit): a chain
    hash: str | None = None  # this entry's, over prev_hash and the fields above


class Alarm(SQLModel, table=True):
    """One alarm in the control room's queue (中控室).

    The ISA-18.2 sub-states are kept apart — is the condition still active, is it
    acknowledged, is it shelved — beside the workflow state, because a flat enum cannot
    say "shelved while active and unacknowledged".
    """

    __tablename__ = "alarms"
    __table_args__ = (
        # the escalation scan each second (edge.alarms.escalate_due): only the alarms still
        # waiting for an acknowledgement, by priority and when their clock started
        Index(
            "ix_alarms_awaiting_ack",
            "priority",
            "escalated_at",
            "raised_at",
            sqlite_where=text("acked_at IS NULL AND state != 'closed'"),
        ),
        # snapshot retention: is this picture kept by an alarm? (edge.cameras)
        Index("ix_alarms_snapshot", "snapshot_id", sqlite_where=text("snapshot_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True)
    type: str = Field(index=True)
    priority: int  # 1 highest … 3
    source: str = Field(index=True)  # alarm-input:<id> | intercom:<id> | gate:<id> | manual
    location: str | None = None
    floor: str | None = None
    room: str | None = None
    gate: str | None = None
    notes: str | None = None
    route_to: str | None = None  # director | service_supervisor (help requests, 000 §八.13)
    raised_by: str | None = None  # the officer, for a help request
    active: bool = True  # the condition itself
    count: int = 1  # activations folded into this alarm
    raised_at: float = Field(index=True)
    last_active_at: float
    cleared_at: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    shelved_until: float | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    state: str = Field(default="new", index=True)  # new|acknowledged|dispatched|resolved|closed
    dispatched_to: str | None = None
    dispatched_at: float | None = None
    dispatched_by: str | None = None
    resolution: str | None = None
    resolution_notes: str | None = None
    resolved_by: str | None = None
    resolved_at: float | None = None
    closed_at: float | None = None
    escalation_level: int = 0
    escalated_at: float | None = None
    checklist: str = "[]"  # JSON: [{"step", "done_at", "by"}]
    snapshot_id: int | None = None


class AlarmLog(SQLModel, table=True):
    """Every change of every alarm: who, what, when (the workload measures read it too)."""

    __tablename__ = "alarm_log"

    id: int | None = Field(default=None, primary_key=True)
    alarm_id: int = Field(index=True)
    at: float = Field(index=True)
    by: str | None = None
    action: str  # raised | activated | normal | acked | dispatched | step | escalated | ...
    detail: str | None = None


class EmergencyRecord(SQLModel, table=True):
    """紧急事件处理记录表: cause, person responsible, remedial and preventive measures, results."""

    __tablename__ = "emergency_records"

    id: int | None = Field(default=None, primary_key=True)
    alarm_id: int = Field(unique=True)
    cause: str
    responsible: str
    remedial: str
    preventive: str
    results: str | None = None
    by: str
    at: float
    results_by: str | None = None
    results_at: float | None = None


class DutyLogEntry(SQLModel, table=True):
    """值班记录: what happened on a shift, by officers and guards and by the system itself."""

    __tablename__ = "duty_log"

    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(index=True)
    by: str
    category: str
    text: str
    alarm_id: int | None = None


class Handover(SQLModel, table=True):
    """交接班: a report built from live state, signed by the outgoing then the incoming officer."""

    __tablename__ = "handovers"

    id: int | None = Field(default=None, primary_key=True)
    shift: str
    shift_start: float
    created_at: float
    created_by: str
    report: str  # JSON, frozen when made
    report_sha256: str
    override_by: str | None = None  # a supervisor let it go with a P1 unacknowledged
    override_reason: str | None = None
    outgoing_by: str | None = None
    outgoing_at: float | None = None
    incoming_by: str | None = None
    incoming_at: float | None = None


class Snapshot(SQLModel, table=True):
    """A JPEG taken at a gate at the moment of an event, decision, release or alarm."""

    __tablename__ = "snapshots"
    __table_args__ = (
        # retention: the pictures still on disk, oldest first
        Index(
            "ix_snapshots_on_disk",
            "id",
            sqlite_where=text("deleted_at IS NULL AND path IS NOT NULL"),
        ),
        # the pictures not yet sent to the office (when its site asks for them), oldest first
        Index(
            "ix_snapshots_for_office",
            "id",
            sqlite_where=text("office_at IS NULL AND deleted_at IS NULL AND path IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    camera: str
    gate: str
    ref_kind: str  # event | alarm | slip | request
    ref_id: str = Field(index=True)
    path: str | None = None  # None: no picture came (camera offline)
    sha256: str | None = None
    bytes: int = 0
    event_ts: float = Field(index=True)
    captured_at: float | None = None
    age_ms: int | None = None  # from the event to the frame's capture
    stale: bool = False
    deleted_at: float | None = None  # removed by retention; the hash stays as evidence
    office_at: float | None = None  # the office has the picture, or refused it for good
