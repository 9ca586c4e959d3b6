"""Health that tells the truth: readiness, the watchdog, and the conditions the control
room watches, from the service's parts as they are now.

Readiness is every part the gate depends on working now; the watchdog is fed only while
every thread turns and the database takes writes, so systemd restarts a service that has
gone quiet inside (a restart would not bring back a broker, a reader or a camera: those
show in readiness only).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from edge import db
from edge.clock import iso

if TYPE_CHECKING:
    from edge.service import Service

# A database that has not taken a write for this long while failing stops the watchdog:
# systemd restarts the service (and its unit's restart limit makes a full disk visible).
WATCHDOG_DB_FAILING_S = 10.0
PROBE_IDLE_S = 5.0  # an idle writer proves it can still write this often (node_meta)
TICKER_STALE_S = 10.0  # the ticker (escalation, the watched conditions) commits every second


def reader_states(svc: Service) -> dict[str, dict[str, Any]]:
    now = svc.clock.monotonic()
    out: dict[str, dict[str, Any]] = {}
    for r in svc.cfg.readers:
        if r.transport == "serial":
            sr = svc.serial[r.id]
            extra: dict[str, Any] = {"port": r.port, **sr.health()}
            last, state, thread_ok = sr.last_frame_at, extra.pop("state"), extra["alive"]
        else:
            last = svc.last_mqtt_swipe.get(r.id)
            state = "open" if svc.mqtt and svc.mqtt.connected else "closed"
            extra, thread_ok = {}, True
        age = None if last is None else round(now - last, 1)
        silent_for = age if age is not None else now - svc.started
        silent = r.silent_after_s is not None and silent_for > r.silent_after_s
        out[r.id] = {
            "transport": r.transport,
            "state": state,
            "ok": state == "open" and not silent and thread_ok,
            "silent": silent,
            "last_frame_age_s": age,
            **extra,
        }
    return out


def conditions(svc: Service) -> dict[tuple[str, str], tuple[bool | None, str | None, str]]:
    """The watched conditions for the control room's ticker. A condition is None while it
    is not known yet: a reader or camera that has sent nothing since start, and has not
    been quiet long enough to be called silent or offline. The ticker neither raises nor
    clears on it (an alarm left active by the last run must not flap at start-up)."""
    out: dict[tuple[str, str], tuple[bool | None, str | None, str]] = {}
    for reader_id, h in reader_states(svc).items():
        r = svc.readers_cfg[reader_id]
        known = not h["ok"] or r.silent_after_s is None or h["last_frame_age_s"] is not None
        out[(f"reader:{reader_id}", "reader_silent")] = (
            not h["ok"] if known else None,
            r.gate,
            f"reader {reader_id}",
        )
    for camera_id, h in svc.cameras.health().items():
        where = f"camera {camera_id}"
        known = h["offline"] or h["frame_age_s"] is not None
        for kind in ("offline", "frozen", "covered"):
            out[(f"camera:{camera_id}", f"camera_{kind}")] = (
                h[kind] if known else None, h["gate"], where)  # fmt: skip
    return out | svc.control.door_conditions()


def device_states(svc: Service) -> dict[str, dict[str, Any]]:
    """Each reader's and camera's state as it is published, retained, on MQTT
    (``reader/<id>/state``, ``camera/<id>/state``): what other systems (Home Assistant)
    show. Only what changes with the device's condition, so it is sent on a change only."""
    out: dict[str, dict[str, Any]] = {}
    for reader_id, r in reader_states(svc).items():
        out[f"reader/{reader_id}/state"] = {"ok": r["ok"], "state": r["state"],
                                             "silent": r["silent"]}  # fmt: skip
    for camera_id, c in svc.cameras.health().items():
        out[f"camera/{camera_id}/state"] = {
            "ok": c["ok"],
            "offline": c["offline"],
            "frozen": c["frozen"],
            "covered": c["covered"],
        }
    return out


def database_state(svc: Service) -> dict[str, Any]:
    w = svc.writer
    return {
        "ok": w.alive() and not w.failing(),
        "thread_alive": w.alive(),
        "failing_for_s": round(w.failing_for(), 1),
        "last_commit_age_s": round(svc.clock.monotonic() - w.last_commit, 1),
        "last_error": w.last_error,
        "queued": w.jobs.qsize(),
        "commits": w.commits,
        "errors": w.errors,
        "refused": w.refused,
    }


def thread_states(svc: Service) -> dict[str, bool]:
    """Every thread the gate depends on, alive or not (each catches its own errors;
    this is how a bug that ends one anyway becomes visible)."""
    out = {"writer": svc.writer.alive()}
    if svc.housekeeper.started:
        out["housekeeping"] = svc.housekeeper.alive()
    if svc.mqtt is not None:
        out["mqtt"] = svc.mqtt.alive()
    for reader_id, sr in svc.serial.items():
        out[f"reader:{reader_id}"] = sr.alive()
    if svc.cfg.cameras:
        out["snapshots"] = svc.cameras.alive()
    if svc.sync is not None:
        out["sync"] = svc.sync.alive()
    if svc.notifier.started:
        out["notify"] = svc.notifier.alive()
    if svc.api_thread is not None:
        out["api"] = svc.api_thread.is_alive()
    if svc.ticking_since is not None:
        last = svc.control.ticked.get("at", svc.ticking_since)
        out["ticker"] = svc.clock.monotonic() - last < TICKER_STALE_S
    return out


def report(svc: Service) -> tuple[bool, dict[str, Any]]:
    readers = reader_states(svc)
    cameras = svc.cameras.health()
    database = database_state(svc)
    broker: dict[str, Any] = {"configured": svc.mqtt is not None, "ok": True}
    if svc.mqtt is not None:
        broker.update(svc.mqtt.health())
    threads = thread_states(svc)
    ok = (
        database["ok"] and broker["ok"] and all(threads.values())
        and all(r["ok"] for r in readers.values())
        and all(c["ok"] for c in cameras.values())
    )  # fmt: skip
    counts = (
        dict(svc.counts) | dict(svc.gate.counts) | dict(svc.bus.counts)
        | dict(svc.control.counts) | dict(svc.notifier.counts)
    )  # fmt: skip
    return ok, {
        "ready": ok,
        "node": svc.cfg.node_id,
        "uptime_s": round(svc.clock.monotonic() - svc.started, 1),
        "database": database,
        "broker": broker,
        "threads": threads,
        "readers": readers,
        "cameras": cameras,
        "sync": _sync(svc),
        # shown, not required: the gate works without its channels off the box
        "notify": _notify(svc),
        "counts": counts | svc.cameras.counts,
    }


def _sync(svc: Service) -> dict[str, Any]:
    if svc.sync is None:
        link: dict[str, Any] = {"configured": False}
    else:
        link = svc.sync.health()
        for key in ("last_push_ok", "last_pull_ok"):  # kept as UNIX times, shown as ISO
            link[key] = iso(link[key], svc.cfg.tz)
    # the gate works without the office: the link is shown, not required; "insecure"
    # is cleartext to an office beyond loopback, which only `insecure = true` allows
    return link | {"insecure": svc.cfg.sync is not None and svc.cfg.sync.cleartext}


def _notify(svc: Service) -> dict[str, Any]:
    channels = svc.notifier.health()
    for c in channels.values():  # kept as UNIX times, shown as ISO
        for key in ("failing_since", "last_sent_at"):
            c[key] = iso(c[key], svc.cfg.tz)
    return {"configured": bool(channels), "ok": all(c["ok"] for c in channels.values()),
            "channels": channels}  # fmt: skip


def watchdog_ok(svc: Service) -> bool:
    """Whether systemd should hear we are alive: every thread runs and the database has
    not refused writes for long. A broker, reader or camera that is away is shown in
    readiness but is no reason to restart (a restart would not bring it back)."""
    return all(thread_states(svc).values()) and (svc.writer.failing_for() < WATCHDOG_DB_FAILING_S)


def probe(svc: Service, conn: sqlite3.Connection) -> None:
    """A small real write when the writer has been idle or failing: readiness then
    says whether the disk takes writes now, not whether it did at the last swipe."""
    w = svc.writer
    if w.failing() or svc.clock.monotonic() - w.last_commit > PROBE_IDLE_S:
        db.set_meta(conn, "alive_at", repr(svc.clock.now()))
