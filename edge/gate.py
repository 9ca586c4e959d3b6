"""The gate pipeline: a card read becomes a decision on disk, then its effects.

Reads arrive from reader threads and the MQTT client; each is a job for the one writer
(edge.writer). In the writer: debounce, look the card's passes up, decide (edge.decision,
pure), insert the event and its outbox row. Only after the commit: acknowledge the MQTT
swipe, publish the decision, and on a fresh grant command the barrier open.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import time as TimeOfDay
from functools import lru_cache

from edge.bus import Bus
from edge.cards import CardId, mask_key
from edge.config import Config, ReaderCfg, parse_hours
from edge.decision import Decision, PassView, SiteRules, decide
from edge.privacy import mask_name
from edge.writer import AfterCommit, Writer

_PASS_COLUMNS = "id, kind, status, valid_from, valid_until, issued_at, gates, daily_window, name"


@dataclass(frozen=True, slots=True)
class CardRead:
    reader: ReaderCfg
    card: CardId
    mono: float  # when the read was taken (monotonic): staleness is measured from here
    source: str  # serial | mqtt
    raw: bytes | None = None
    ack: Callable[[], None] | None = None  # MQTT: acknowledge once the decision is on disk
    replayed: bool = False  # redelivered after a crash: its age is unknown, so it is stale


def site_rules(cfg: Config) -> SiteRules:
    return SiteRules(tz=cfg.tz, kind_hours={"worker": cfg.rules.worker_hours})


@lru_cache(maxsize=256)
def _window(text: str) -> tuple[TimeOfDay, TimeOfDay]:
    return parse_hours(text, "daily_window")


@lru_cache(maxsize=256)
def _gates(text: str) -> frozenset[str]:
    return frozenset(g.strip() for g in text.split(",") if g.strip())


def lookup(conn: sqlite3.Connection, card_key: int) -> list[tuple[PassView, str]]:
    """The card's passes with their holders' names."""
    rows = conn.execute(f"SELECT {_PASS_COLUMNS} FROM passes WHERE card_key = ?", (card_key,))
    return [
        (
            PassView(
                id=r[0],
                kind=r[1],
                status=r[2],
                valid_from=r[3],
                valid_until=r[4],
                issued_at=r[5],
                gates=_gates(r[6]) if r[6] else None,
                daily_window=_window(r[7]) if r[7] else None,
            ),
            r[8],
        )
        for r in rows
    ]


def check(
    conn: sqlite3.Connection, card: CardId, now: float, gate: str, rules: SiteRules
) -> tuple[Decision, str | None]:
    """The decision the gate would make, and the holder's name; records nothing."""
    found = lookup(conn, card.key)
    decision = decide([p for p, _ in found], now, gate, rules)
    names = {p.id: name for p, name in found}
    return decision, names.get(decision.pass_.id) if decision.pass_ else None


class ReadJob:
    __slots__ = ("gate", "read")

    def __init__(self, gate: GatePipeline, read: CardRead) -> None:
        self.gate, self.read = gate, read

    def run(self, conn: sqlite3.Connection) -> AfterCommit:
        return self.gate.record(conn, self.read)

    def failed(self, error: BaseException) -> None:
        self.gate.counts["record_failed"] += 1  # not acked: MQTT will deliver it again


class GatePipeline:
    def __init__(
        self,
        cfg: Config,
        writer: Writer,
        bus: Bus,
        epoch: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.rules = site_rules(cfg)
        self.writer = writer
        self.bus = bus
        self.epoch = epoch
        self.clock = clock
        self.monotonic = monotonic
        self.counts: Counter[str] = Counter()
        # (reader, card) → last sighting, oldest first; writer thread only
        self._last_seen: dict[tuple[str, int], float] = {}
        self._debounce_horizon = max((r.debounce_ms for r in cfg.readers), default=0) / 1000

    def submit(self, read: CardRead) -> None:
        self.writer.submit(ReadJob(self, read))

    def _debounced(self, read: CardRead) -> bool:
        """Same card on the same reader within the window of its *last* sighting.

        Measured from the last sighting, so a card left on the reader never re-triggers,
        while a deliberate re-tap after lifting it does.
        """
        key = (read.reader.id, read.card.key)
        seen = self._last_seen
        last = seen.pop(key, None)
        seen[key] = read.mono  # re-inserted: the dict stays ordered by last sighting
        # forget sightings too old to debounce anything: from the oldest end, O(1) a read
        horizon = read.mono - self._debounce_horizon
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= horizon:
                break
            del seen[oldest]
        return last is not None and 0 <= read.mono - last < read.reader.debounce_ms / 1000

    def record(self, conn: sqlite3.Connection, read: CardRead) -> AfterCommit:
        if self._debounced(read):
            self.counts["debounced"] += 1
            return read.ack
        now = self.clock()
        age = max(0.0, self.monotonic() - read.mono)
        gate = read.reader.gate
        decision, holder = check(conn, read.card, now, gate, self.rules)
        stale = read.replayed or age > self.cfg.rules.stale_after_s
        p = decision.pass_
        event_id = uuid.uuid4().hex
        verdict = "grant" if decision.granted else "deny"
        row = (
            event_id, now, gate, read.reader.id, read.reader.direction, verdict,
            decision.reason.value, p.id if p else None, p.kind if p else None,
            read.card.key, read.card.hex, holder, read.source,
            read.raw.hex() if read.raw else None, int(age * 1000), stale,
        )  # fmt: skip
        conn.execute(
            "INSERT INTO access_events (event_id, ts, gate, reader, direction, decision, "
            "reason, pass_id, pass_kind, card_key, card_hex, holder, source, raw, "
            "read_age_ms, stale) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            row,
        )
        office = {
            "event_id": event_id, "ts": now, "node": self.cfg.node_id, "gate": gate,
            "reader": read.reader.id, "direction": read.reader.direction,
            "decision": verdict, "reason": decision.reason.value,
            "pass_id": row[7], "pass_kind": row[8], "card_key": read.card.key,
            "card_hex": read.card.hex, "holder": holder, "source": read.source,
            "stale": stale,
        }  # fmt: skip
        conn.execute(
            "INSERT INTO outbox (epoch, kind, ref, payload, created_at) VALUES (?,?,?,?,?)",
            (self.epoch, "access_event", event_id, json.dumps(office, ensure_ascii=False), now),
        )
        self.counts[f"{verdict}:{decision.reason.value}"] += 1
        if stale:
            self.counts["stale"] += 1
        message = {
            "event_id": event_id,
            "ts": datetime.fromtimestamp(now, self.cfg.tz).isoformat(timespec="milliseconds"),
            "gate": gate,
            "reader": read.reader.id,
            "direction": read.reader.direction,
            "decision": verdict,
            "reason": decision.reason.value,
            "pass_id": row[7],
            "pass_kind": row[8],
            "holder": mask_name(holder, self.cfg.rules.name_mask) if holder else None,
            "card": mask_key(read.card.key),
            "stale": stale,
        }
        open_barrier = decision.granted and not stale

        def effects() -> None:
            if read.ack is not None:
                read.ack()
            self.bus.publish(f"gate/{gate}/decision", message)
            if open_barrier:
                self.bus.command(
                    f"gate/{gate}/open",
                    {
                        "event_id": event_id,
                        "pulse_ms": self.cfg.rules.open_pulse_ms,
                        "ts": message["ts"],
                    },
                )

        return effects
