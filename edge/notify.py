"""通知 News off the box: an alarm raised, escalated or resolved, and a visitor arrived,
sent to the channels a site configures (a WeCom or DingTalk group robot, ntfy, e-mail,
Telegram, a webhook …) through Apprise.

A piece of news is a record before it is a message: it is queued in the transaction that
changed the alarm (``enqueue``, called where every alarm change is announced), so nothing
is lost while the link is down or the service restarts. One thread (``Notifier``) sends
what is queued, once, oldest first, and writes through the one writer what became of it:
sent, or dropped because it went stale (the alarm was resolved before a "raised" could be
sent; a visitor's arrival told too late to matter). A channel takes at most ``[notify]
flood`` messages a ``flood_window_s``; what comes beyond goes as one summary. Each send
goes in the duty log and the alarm's history; a channel that fails is paused (doubling,
up to ten times ``retry_s``), its first failure and its recovery go in the duty log, and
readiness shows it.

The decisions (which channel takes which news, what a message says, what is stale, how
many more a channel may take now) are pure functions with table cases in tests/test_notify.py.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from edge import alarms, db, dutylog
from edge.clock import Clock, iso
from edge.config import ChannelCfg, NotifyCfg, hide_notify_url
from edge.console.text import ZH
from edge.decision import in_window
from edge.privacy import mask_name

log = logging.getLogger(__name__)
T = TypeVar("T")
PASS_S = 1.0  # the sender looks for queued news this often
BATCH = 500  # at most this many queued rows of a channel looked at per pass
SUMMARY_LINES = 8  # the most urgent messages a summary names one by one
ROUTE_ZH = {"director": "特殊求助，请主任知悉", "service_supervisor": "一般求助，请客服主管知悉"}


@dataclass(frozen=True)
class News:
    """What happened, as the channels' rules read it."""

    event: str  # raised | escalated | resolved | visitor | gate_mode
    type: str | None = None  # the alarm's type
    priority: int = 3
    level: int = 0  # the escalation level
    route_to: str | None = None  # a help request's: director | service_supervisor


def news_of(view: dict[str, Any]) -> News:
    """An alarm as it is now (``views.alarm_view``) as news."""
    if view["state"] in ("resolved", "closed"):
        event = "resolved"
    else:
        event = "escalated" if view["escalation_level"] > 0 else "raised"
    return News(event, view["type"], view["priority"], view["escalation_level"], view["route_to"])


def takes(ch: ChannelCfg, news: News, local: time) -> bool:
    """Whether a channel takes a piece of news at the local time of day ``local``."""
    if news.event not in ch.events:
        return False
    if ch.quiet is not None and in_window(local, ch.quiet) and news.priority > 1:
        return False  # a quiet night: only priority 1 wakes anybody
    if news.event in ("visitor", "gate_mode"):
        return True
    if ch.types and news.type not in ch.types:
        return False
    if news.priority > ch.max_priority:
        return False
    if ch.route_to and news.route_to not in ch.route_to:
        return False
    if news.event == "raised":
        return ch.min_level == 0
    if news.event == "escalated":
        return news.level >= ch.min_level
    return True  # resolved: sent only where the alarm was told before (enqueue)


def stale(event: str, alarm_state: str | None, told: bool, queued_at: float, now: float,
          cfg: NotifyCfg) -> str | None:  # fmt: skip
    """Why a queued message is no longer worth sending, or None: a "raised" or "escalated"
    whose alarm was resolved first, a "resolved" of an alarm the channel was never told of,
    a visitor's arrival older than ``visitor_stale_s``."""
    if event in ("raised", "escalated") and alarm_state in ("resolved", "closed"):
        return "the alarm was resolved before this could be sent"
    if event == "resolved" and not told:
        return "nothing of this alarm reached the channel before it was resolved"
    if event == "visitor" and now - queued_at > cfg.visitor_stale_s:
        return f"not sent within {cfg.visitor_stale_s:.0f} s of the arrival"
    return None


def _type_zh(kind: str | None) -> str:
    return ZH.get(f"alarm.{kind}", kind or "报警")


def message(view: dict[str, Any], news: News, node: str) -> tuple[str, str]:
    """An alarm's news as (title, body), in Chinese. Names stay on the box: the message
    says where and what, and who resolved it masked."""
    what = _type_zh(view["type"])
    heading = {"raised": "报警", "escalated": f"无人确认，已升级（第 {news.level} 级）",
               "resolved": "已处理"}[news.event]  # fmt: skip
    title = f"【P{view['priority']}】{what} {heading}"
    where = view["location"] or (f"{view['gate']} 门岗" if view["gate"] else None)
    if where is None and view["source"] != "manual":  # a device: name it
        where = view["source"]
    lines = [f"地点：{where}"] if where else []
    if view["floor"] or view["room"]:
        lines.append(f"楼层/房号：{view['floor'] or ''} {view['room'] or ''}".rstrip())
    lines.append(f"报警时间：{_clock(view['raised_at'])}")
    if view["count"] > 1:
        lines.append(f"触发次数：{view['count']}")
    if view["route_to"] in ROUTE_ZH:
        lines.append(ROUTE_ZH[view["route_to"]])
    if news.event == "resolved":
        said = ZH.get(f"resolution.{view['resolution']}", view["resolution"])
        lines.append(f"处理结果：{said}")
        if view["resolved_by"]:
            lines.append(f"处理人：{mask_name(view['resolved_by'])}")
    elif view["acked"]:
        lines.append(f"控制室已确认：{mask_name(view['acked_by'] or '')}")
    else:
        lines.append("控制室尚未确认")
    lines.append(f"报警编号：{node} #{view['id']}")
    return title, "\n".join(lines)


def visitor_message(v: dict[str, Any], gate_of: str | None, local: str) -> tuple[str, str]:
    """An announced visitor's arrival, for the host (the name masked)."""
    title = f"访客已到达：{v['host_unit']}"
    body = (f"您预约的访客 {mask_name(v['name'])} 已于 {local} 到达"
            f"{f' {gate_of} 门岗' if gate_of else '门岗'}，已放行。")  # fmt: skip
    return title, body


def mode_message(m: dict[str, Any], was: str, by: str, reason: str,
                 until: str | None) -> tuple[str, str]:  # fmt: skip
    """A gate's mode changed (a fire holds it open, a robbery locks it), for a channel that
    takes ``gate_mode``: what, why, by whom (masked, but "system" for a fire input)."""
    mode, gate = m["mode"], m["gate"]
    title = f"【大门】{gate} {ZH.get('mode.' + mode, mode)}"
    lines = [f"原状态：{ZH.get('mode.' + was, was)}", f"原因：{reason}",
             f"设置人：{by if by == 'system' else mask_name(by)}"]  # fmt: skip
    if mode != "normal":
        lines.append(f"至：{until[:16].replace('T', ' ') if until else '取消为止'}")
    return title, "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """One message for a flood: how many of each kind, and the most urgent by name."""
    kinds = Counter(r["title"].split("】", 1)[-1] for r in rows)
    lines = [f"{what} × {n}" for what, n in kinds.most_common()]
    urgent = sorted(rows, key=lambda r: (r["priority"], r["id"]))[:SUMMARY_LINES]
    lines += ["", "其中最紧急："] + [
        f"{r['title']} · {r['body'].split(chr(10), 1)[0]}" for r in urgent
    ]
    lines += ["", "详情请看控制室报警队列。"]
    return f"【汇总】{len(rows)} 条通知", "\n".join(lines)


def _clock(at_iso: str | None) -> str:
    return at_iso[11:19] if at_iso else ""  # HH:MM:SS of an ISO time


# -- queued in the transaction that made the news ----------------------------------------


def _queue(conn: sqlite3.Connection, ref: str, alarm_id: int | None, ch: ChannelCfg, news: News,
           text: tuple[str, str], now: float, unit: str | None = None) -> None:  # fmt: skip
    conn.execute(
        "INSERT OR IGNORE INTO notifications (ref, alarm_id, channel, event, level, priority, "
        "title, body, unit, queued_at, state, attempts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0)",
        (ref, alarm_id, ch.id, news.event, news.level, news.priority, *text, unit, now),
    )  # fmt: skip


def enqueue(conn: sqlite3.Connection, cfg: NotifyCfg, views: Iterable[dict[str, Any]],
            now: float, tz: ZoneInfo, node: str) -> None:  # fmt: skip
    """Queue the news of alarms just changed, for each channel that takes it: once per
    (alarm, channel, event, level), so an alarm announced again (a count, a checklist tick)
    is not news again. A "resolved" goes only to a channel that heard of the alarm."""
    if not cfg.channels:
        return
    local = datetime.fromtimestamp(now, tz).time()
    for v in views:
        news = news_of(v)
        for ch in cfg.channels:
            if not takes(ch, news, local):
                continue
            if news.event == "resolved" and not _told(conn, v["id"], ch.id):
                continue
            _queue(conn, f"alarm:{v['id']}", v["id"], ch, news, message(v, news, node), now)


def _told(conn: sqlite3.Connection, alarm_id: int, channel: str) -> bool:
    sql = "SELECT 1 FROM notifications WHERE alarm_id = ? AND channel = ? LIMIT 1"
    return conn.execute(sql, (alarm_id, channel)).fetchone() is not None


def visitor_arrived(conn: sqlite3.Connection, cfg: NotifyCfg, visitor: dict[str, Any],
                    now: float, tz: ZoneInfo) -> None:  # fmt: skip
    """Queue an announced visitor's arrival for the channels that take visitors."""
    if not cfg.channels:
        return
    local = datetime.fromtimestamp(now, tz)
    news = News("visitor")
    text = visitor_message(visitor, visitor["gate"], local.strftime("%H:%M"))
    for ch in cfg.channels:
        if takes(ch, news, local.time()):
            _queue(
                conn, f"visitor:{visitor['id']}", None, ch, news, text, now, visitor["host_unit"]
            )


def gate_mode_changed(conn: sqlite3.Connection, cfg: NotifyCfg, m: dict[str, Any], was: str,
                      by: str, reason: str, now: float, tz: ZoneInfo) -> None:  # fmt: skip
    """Queue a gate's new mode for the channels that take ``gate_mode`` (as priority 1:
    a gate held open for a fire or locked for a robbery wakes the people it concerns)."""
    if not cfg.channels or m["mode"] == was:
        return
    local = datetime.fromtimestamp(now, tz)
    news = News("gate_mode", priority=1)
    until = iso(m["until"], tz) if m["until"] is not None else None
    text = mode_message(m, was, by, reason, until)
    for ch in cfg.channels:
        if takes(ch, news, local.time()):
            _queue(conn, f"gate_mode:{m['gate']}:{now:.3f}", None, ch, news, text, now)


def of_alarm(conn: sqlite3.Connection, alarm_id: int, tz: ZoneInfo) -> list[dict[str, Any]]:
    """An alarm's notifications, for its detail: where, what, and what became of each."""
    return [
        {"channel": r["channel"], "event": r["event"], "level": r["level"], "state": r["state"],
         "attempts": r["attempts"], "queued_at": iso(r["queued_at"], tz),
         "sent_at": iso(r["sent_at"], tz), "error": r["last_error"]}
        for r in db.rows(conn, "SELECT * FROM notifications WHERE alarm_id = ? ORDER BY id",
                         (alarm_id,))
    ]  # fmt: skip


# -- sent by one thread -------------------------------------------------------------------


def send(url: str, title: str, body: str) -> str | None:
    """Send one message; None when the channel took it, else why not (Apprise's words)."""
    import apprise

    ap = apprise.Apprise()
    if not ap.add(url):
        return "Apprise cannot send to this URL"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = ap.notify(body=body, title=title)
    if ok:
        return None
    said = [line for line in captured.getvalue().splitlines() if line.strip()]
    return said[-1].split(" - ", 2)[-1][:300] if said else "the channel did not take it"


_QUEUED = (
    "SELECT n.*, a.state AS alarm_state, EXISTS (SELECT 1 FROM notifications s WHERE "
    "s.alarm_id = n.alarm_id AND s.channel = n.channel AND s.state IN ('sent', 'summarised')) "
    "AS told FROM notifications n LEFT JOIN alarms a ON a.id = n.alarm_id "
    "WHERE n.state = 'queued' AND n.channel = ? ORDER BY n.id LIMIT ?"
)


def room(sends: Iterable[float], mono: float, cfg: NotifyCfg) -> int:
    """How many more messages a channel may take at ``mono``: ``flood`` per
    ``flood_window_s``, counted from the times of its last sends."""
    return max(0, cfg.flood - sum(mono - t < cfg.flood_window_s for t in sends))


@dataclass
class _Channel:
    cfg: ChannelCfg
    failures: int = 0  # in a row
    paused_until: float = 0.0  # monotonic
    failing_since: float | None = None  # wall clock, for readiness
    last_error: str | None = None
    last_sent_at: float | None = None
    sent: int = 0
    queued: int = 0
    # when its last sends went (monotonic): the last `flood` of them are all `room` needs
    sends: deque[float] = field(default_factory=deque)


class Notifier:
    """The one thread that sends queued news (see the module's docstring)."""

    def __init__(self, cfg: NotifyCfg, read: Callable[[Callable[[sqlite3.Connection], T]], T],
                 write: Callable[[Callable[[sqlite3.Connection], Any]], Any],
                 clock: Clock) -> None:  # fmt: skip
        self.cfg = cfg
        self.read, self.write, self.clock = read, write, clock
        self.channels = {c.id: _Channel(c) for c in cfg.channels}
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self.started = False

    def start(self) -> None:
        if self.channels:
            self.started = True
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.started:
            self._thread.join(15)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def health(self) -> dict[str, Any]:
        mono = self.clock.monotonic()
        return {c.cfg.id: {
            "ok": c.failures == 0, "queued": c.queued, "sent": c.sent,
            "failing_since": c.failing_since, "last_error": c.last_error,
            "last_sent_at": c.last_sent_at, "retry_in_s": round(max(0.0, c.paused_until - mono), 1),
            "url": hide_notify_url(c.cfg.url),
        } for c in self.channels.values()}  # fmt: skip

    def _loop(self) -> None:
        while not self._stop.wait(PASS_S):
            for ch in self.channels.values():
                try:
                    self.once(ch)
                except Exception:  # a bug or a database away: counted, tried again next pass
                    self.counts["notify_errors"] += 1
                    log.exception("notifications: the pass for %s failed", ch.cfg.id)

    def once(self, ch: _Channel) -> None:
        """One pass for one channel: drop what is stale, then send the rest, one by one
        or as one summary, stopping at the first failure."""
        if self.clock.monotonic() < ch.paused_until:
            return
        rows = self.read(lambda c: db.rows(c, _QUEUED, (ch.cfg.id, BATCH)))
        ch.queued = len(rows)
        if not rows:
            return
        now = self.clock.now()
        live, dropped = [], []
        for r in rows:
            why = stale(r["event"], r["alarm_state"], bool(r["told"]), r["queued_at"], now,
                        self.cfg)  # fmt: skip
            (dropped if why else live).append((r, why))
        if dropped:
            self.write(lambda c: _dropped(c, dropped, now))
            self.counts["notify_dropped"] += len(dropped)
        todo = [r for r, _ in live]
        # a flood: at most `flood` messages a window, the rest as one summary when a send
        # is free again (never where each message goes to a household of its own)
        if "{unit}" not in ch.cfg.url:
            left = room(ch.sends, self.clock.monotonic(), self.cfg)
            if left == 0:
                return  # the summary waits for a free send
            if len(todo) > left:
                title, body = summary(todo)
                if self._send(ch, ch.cfg.url, title, body, todo):
                    self.counts["notify_summaries"] += 1
                return
        for r in todo:
            url = ch.cfg.url.replace("{unit}", quote(r["unit"] or "", safe=""))
            if not self._send(ch, url, r["title"], r["body"], [r]):
                return

    def _send(self, ch: _Channel, url: str, title: str, body: str,
              rows: list[dict[str, Any]]) -> bool:  # fmt: skip
        error = send(url, title, body)
        now = self.clock.now()
        if error is None:
            # back after failing: known from the rows too, across a restart
            first_back = ch.failures > 0 or any(r["attempts"] for r in rows)
            self.write(lambda c: _sent(c, ch.cfg.id, rows, title, now, first_back))
            ch.failures, ch.failing_since, ch.last_error = 0, None, None
            ch.paused_until, ch.last_sent_at = 0.0, now
            ch.sent += 1
            ch.sends.append(self.clock.monotonic())
            if len(ch.sends) > self.cfg.flood:
                ch.sends.popleft()
            ch.queued -= len(rows)
            self.counts["notify_sent"] += 1
            return True
        first = ch.failures == 0
        ch.failures += 1
        ch.failing_since = ch.failing_since or now
        ch.last_error = error
        pause = min(self.cfg.retry_s * 2 ** (ch.failures - 1), self.cfg.retry_s * 10)
        ch.paused_until = self.clock.monotonic() + pause
        self.counts["notify_failed"] += 1
        log.warning("notification to %s failed (tried again in %.0f s): %s", ch.cfg.id, pause,
                    error)  # fmt: skip
        self.write(lambda c: _failed(c, ch.cfg.id, rows, error, first, now))
        return False


def _dropped(conn: sqlite3.Connection, rows: list[tuple[dict[str, Any], str | None]],
             now: float) -> None:  # fmt: skip
    for r, why in rows:
        conn.execute("UPDATE notifications SET state = 'dropped', last_error = ?, sent_at = ? "
                     "WHERE id = ?", (why, now, r["id"]))  # fmt: skip


def _sent(conn: sqlite3.Connection, channel: str, rows: list[dict[str, Any]], title: str,
          now: float, back: bool) -> None:  # fmt: skip
    state = "sent" if len(rows) == 1 else "summarised"
    for r in rows:
        conn.execute("UPDATE notifications SET state = ?, sent_at = ?, attempts = attempts + 1, "
                     "last_error = NULL WHERE id = ?", (state, now, r["id"]))  # fmt: skip
        if r["alarm_id"] is not None:
            alarms.log_action(conn, r["alarm_id"], now, "notified", f"{channel}: {r['event']}")
    if back:
        dutylog.add(conn, now, "system", "alarm", f"通知渠道 {channel} 已恢复，积压的通知已补发")
    alarm_id = rows[0]["alarm_id"] if len(rows) == 1 else None
    category = "visitor" if rows[0]["event"] == "visitor" else "alarm"
    dutylog.add(conn, now, "system", category, f"通知已发至 {channel}：{title}", alarm_id)


def _failed(conn: sqlite3.Connection, channel: str, rows: list[dict[str, Any]], error: str,
            first: bool, now: float) -> None:  # fmt: skip
    """A send that failed: counted on its rows, in an alarm's history at its first failure,
    and in the duty log at the channel's first failure (not at every retry)."""
    for r in rows:
        conn.execute("UPDATE notifications SET attempts = attempts + 1, last_error = ? "
                     "WHERE id = ?", (error, r["id"]))  # fmt: skip
        if r["attempts"] == 0 and r["alarm_id"] is not None:
            alarms.log_action(conn, r["alarm_id"], now, "notify_failed", f"{channel}: {error}")
    if first:
        said = f"通知渠道 {channel} 发送失败，通知留在队列中，恢复后补发：{error}"
        dutylog.add(conn, now, "system", "alarm", said)
