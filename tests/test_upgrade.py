"""Upgrades lose nothing (issue 13, "Upgrades"): a database made by an earlier release's
migrations, with rows in every table, upgraded by this release keeps every row with the
same values, its new columns hold their documented defaults, and the service uses it.

Which revisions. The previous release is the tree before this round's first schema change
(6c90930, "Office sync for a property company"; its parent 366dd4f): there the gate's
migrations ended at 0011 and the office's at 0006. This round added office 0007 (sites and
the audit log) and 0008 (edge_events by month), and no migration of the gate's, so the
gate's previous release is still its head: its database is opened by this release's code
(``edge.db.migrate``) and must serve as it is. A gate or an office may also skip releases,
so every earlier revision is tested too, each on a database of its own: base → that
revision, a row in every table, → head (edge 0001-0011, office 0001-0007). The migration
files that shipped are unchanged since (``git diff 366dd4f -- edge/migrations
sync/migrations`` shows only the two new files), so today's files taken to an old revision
make the schema that release made.

The rows are written here, table by table, as the old release wrote them; a table or a
column a revision has that the fixture gives no value fails the test, so a new migration
extends the fixture. A row marked ``_since`` is one the office could hold only from that
revision on (slips from 0002, photos 0004, sites 0007). A column a later migration added is
named in ``EDGE_ADDED`` or ``OFFICE_ADDED`` with the value an older row gets.

Last, the previous release's gate and its office (fixtures that agree: the gate's epoch and
cursor are the office's) are both upgraded and run together: the records the gate had not
sent yet arrive, and its pull carries on in the same change log.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2
import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from PIL import Image
from psycopg2.extras import Json
from sqlalchemy import Engine, text

from edge import audit, db, outbox, users
from edge.api import create_app
from edge.cards import parse_card
from edge.privacy import IdHasher
from sync import office, officedb, partitions, recovery, reports
from tests.helpers import (
    Node,
    Office,
    add_sync,
    bearer,
    cli,
    free_port,
    http_call,
    in_process,
    pg_rows,
    wait_for,
    write_config,
)

TZ = ZoneInfo("Asia/Shanghai")  # the zone of tests.helpers.write_config's gates


def at(local: str) -> float:
    """A time as the guard room writes it (Asia/Shanghai)."""
    return datetime.fromisoformat(local).replace(tzinfo=TZ).timestamp()


def utc(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def revisions(cfg: AlembicConfig) -> list[str]:
    """The migrations' revisions, oldest first."""
    return [s.revision for s in reversed(list(ScriptDirectory.from_config(cfg).walk_revisions()))]


EDGE_ALEMBIC = db._alembic_config()
OFFICE_ALEMBIC = officedb.alembic_config()
EDGE_REVISIONS = revisions(EDGE_ALEMBIC)
OFFICE_REVISIONS = revisions(OFFICE_ALEMBIC)
EDGE_RELEASED = "0011"  # the gate's head at 366dd4f, the previous release (docstring)
OFFICE_RELEASED = "0006"  # the office's head there

# -- what a gate and its office share: the office's passes, its change log, the gate's epoch --

ID_KEY = "5c0f3e9a1b7d2c48e6f0a3b5d7c9e1f2" * 2  # the gate's ID-number key (keys/id_hash.key)
HASHER = IdHasher(bytes.fromhex(ID_KEY))


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 60), (200, 120, 80)).save(buf, "JPEG")
    return buf.getvalue()


PHOTO = _jpeg()  # 李秀英's, taken at the office's desk
PHOTO_SHA = hashlib.sha256(PHOTO).hexdigest()
OFFICE_CARD = parse_card("3C5D7E9F")  # 李秀英's resident card, issued at the office
OFFICE_WORKER = parse_card("6B4A2918")  # 马师傅's, revoked at the office
OFFICE_STAFF = parse_card("0A1B2C3D4E")  # 孙丽, staff, the side gate only
NORTH_CARD = parse_card("77665544")  # 北园's, once the office has sites
EAST_TOKEN = "old-release-node-token-gate-east"  # the gate's token at the office
CLERK_TOKEN = "old-release-clerk-token-zhoumin"
ADMIN_TOKEN = "old-release-admin-token-chen"
CLERK_PASSWORD = "服务中心周敏的密码"
LOG_ID = "3f9a1c7e5b2d4086"  # the change log's identity, which the gate quotes back
STAMPS = {n: hashlib.sha256(f"change {n}".encode()).hexdigest()[:16] for n in range(1, 9)}
EPOCH, OLD_EPOCH = 1843275391, 905117  # the gate's epoch, and one it had before
EPOCH_BASE = 1035  # the epoch's first seq: the gate was restored from a backup there
EVENT_GRANT = "9d0c5b7e2f4a4c1e8b3d6a0f1e2c3b4a"  # its record 1040, the last the office took
GRANT_PAYLOAD = json.dumps({"event_id": EVENT_GRANT, "gate": "main", "decision": "grant"})
OFFICE_RES, OFFICE_WORK, OFFICE_SIDE = "a3f0c6e91d2b4857", "5d2e8b1f7a9c3460", "9e1c3a5b7d2f4608"
NORTH_PASS = "e8c17a4b2f906d35"


def _pass(**fields: Any) -> dict[str, Any]:
    base = {"card_hex": None, "unit": None, "id_hash": None, "id_last4": None,
            "valid_until": None, "status": "active", "status_reason": None, "gates": None,
            "daily_window": None, "permit_no": None, "deposit_fen": None, "fee_fen": None,
            "version": 1, "photo_sha256": None, "site": "default"}  # fmt: skip
    return base | fields


OFFICE_PASSES = [
    _pass(id=OFFICE_RES, kind="resident", card_key=OFFICE_CARD.key, card_hex=OFFICE_CARD.hex,
          name="李秀英", unit="1-2-0301", id_hash=HASHER.digest("110101195602140021")[0],
          id_last4="0021", valid_from=at("2026-03-01 00:00"), gates="main",
          daily_window="06:00-23:30", issued_by="周敏", updated_by="周敏",
          issued_at=at("2026-02-27 10:03:41"), updated_at=at("2026-02-27 10:03:41"),
          photo_sha256=PHOTO_SHA),
    _pass(id=OFFICE_WORK, kind="worker", card_key=OFFICE_WORKER.key, name="马师傅",
          unit="5-1-0801", valid_from=at("2026-10-08 00:00"),
          valid_until=at("2026-12-31 23:59:59"), status="revoked", status_reason="装修结束",
          gates="main,side", daily_window="07:00-19:00", permit_no="ZX-2026-0412",
          deposit_fen=5000, fee_fen=500, version=2, issued_by="周敏", updated_by="陈主管",
          issued_at=at("2026-10-07 15:30"), updated_at=at("2026-11-28 17:45:12.75")),
    _pass(id=OFFICE_SIDE, kind="staff", card_key=OFFICE_STAFF.key, name="孙丽",
          valid_from=at("2026-07-01 00:00"), gates="side", issued_by="陈主管",
          updated_by="陈主管", issued_at=at("2026-06-30 09:00"),
          updated_at=at("2026-06-30 09:00")),
    _pass(id=NORTH_PASS, kind="resident", card_key=NORTH_CARD.key, name="周杰",
          valid_from=at("2026-12-05 00:00"), gates="north-1", issued_by="陈主管",
          updated_by="陈主管", issued_at=at("2026-12-05 09:00"),
          updated_at=at("2026-12-05 09:00"), site="north", _since="0007"),
]  # fmt: skip


# -- the gate's database as the old release left it --------------------------------------

WORKER = parse_card("2A7F19C4")  # 王建国, a decorator's worker: granted at the gates
LENT = parse_card("04A1B2C3D4E5F6")  # the temporary card lent to a visitor, revoked since
WORKER_ID_HASH, WORKER_ID_LAST4 = HASHER.digest("110101199003071234")
VISITOR_ID_HASH, VISITOR_ID_LAST4 = HASHER.digest("440301198807150028")
GUARD_TOKEN = "old-release-guard-token-laozhang"
CONTROL_TOKEN = "old-release-control-token-wang"
GUARD_PASSWORD = "门岗老张的密码2026"
EVENT_OVERRIDE = "1a2b3c4d5e6f40718293a4b5c6d7e8f9"
WORKER_PASS, LENT_PASS = "7f3a9c2e5b1d4680", "0b9e4f7a2c6d8135"
# 李秀英's pass as the gate pulled it (changes 1..5 of the office's log; the rest not yet)
HELD = {k: v for k, v in OFFICE_PASSES[0].items() if k != "site"} | {
    "photo_path": None,
    "origin": "office",
}

EDGE_ROWS: dict[str, list[dict[str, Any]]] = {
    "node_meta": [
        {"key": "epoch", "value": str(EPOCH)},
        {"key": f"epoch_base:{EPOCH}", "value": str(EPOCH_BASE)},
        {"key": "pull_cursor", "value": "5"},
        {"key": "pull_log", "value": LOG_ID},
        {"key": "pull_stamp", "value": STAMPS[5]},
        {"key": "alive_at", "value": repr(at("2026-12-04 23:59:58.25"))},
    ],
    "passes": [
        {"id": WORKER_PASS, "kind": "worker", "card_key": WORKER.key, "card_hex": WORKER.hex,
         "name": "王建国", "unit": "3-2-1502", "id_hash": WORKER_ID_HASH,
         "id_last4": WORKER_ID_LAST4, "valid_from": at("2026-11-16 00:00"),
         "valid_until": at("2027-02-15 23:59:59"), "status": "active", "status_reason": None,
         "gates": "main,side", "daily_window": "07:00-19:00", "permit_no": "ZX-2026-0318",
         "deposit_fen": 5000, "fee_fen": 500, "photo_path": "photos/7f3a9c2e5b1d4680.jpg",
         "photo_sha256": "e3b7" * 16, "issued_at": at("2026-11-15 14:20:07.5"),
         "updated_at": at("2026-11-15 14:20:07.5"), "version": 1, "issued_by": "老张",
         "updated_by": "老张", "origin": "local"},
        HELD,
        {"id": LENT_PASS, "kind": "temporary", "card_key": LENT.key, "card_hex": LENT.hex,
         "name": "陈静", "unit": "2-1-0603", "id_hash": VISITOR_ID_HASH,
         "id_last4": VISITOR_ID_LAST4, "valid_from": at("2026-12-03 09:12"),
         "valid_until": at("2026-12-03 21:12"), "status": "revoked",
         "status_reason": "访客离开未还卡", "gates": "main", "daily_window": None,
         "permit_no": None, "deposit_fen": 2000, "fee_fen": None, "photo_path": None,
         "photo_sha256": None, "issued_at": at("2026-12-03 09:12"),
         "updated_at": at("2026-12-03 22:30"), "version": 2, "issued_by": "老张",
         "updated_by": "夜班 小李", "origin": "local"},
    ],
    "access_events": [
        {"id": 1, "event_id": EVENT_GRANT, "ts": at("2026-12-03 07:41:12.317"), "gate": "main",
         "reader": "main-in", "direction": "in", "decision": "grant", "reason": "ok",
         "pass_id": WORKER_PASS, "pass_kind": "worker", "card_key": WORKER.key,
         "card_hex": WORKER.hex, "holder": "王建国", "source": "serial",
         "raw": "02 0a 2a 7f 19 c4 03", "read_age_ms": 38, "stale": 0, "by": None,
         "notes": None, "snapshot_id": 1},
        {"id": 2, "event_id": EVENT_OVERRIDE, "ts": at("2026-12-03 23:05:40"), "gate": "side",
         "reader": None, "direction": "in", "decision": "grant", "reason": "manual_override",
         "pass_id": None, "pass_kind": None, "card_key": None, "card_hex": None,
         "holder": "急救车 120", "source": "override", "raw": None, "read_age_ms": None,
         "stale": 1, "by": "老张", "notes": "送医急救车，未刷卡", "snapshot_id": 2},
    ],
    "outbox": [  # 1..1039 acknowledged and pruned; AUTOINCREMENT's counter stays at 1042
        {"seq": 1040, "epoch": EPOCH, "kind": "access_event", "ref": EVENT_GRANT,
         "payload": GRANT_PAYLOAD,
         "created_at": at("2026-12-03 07:41:12.317"), "acked_at": at("2026-12-03 07:41:13")},
        {"seq": 1041, "epoch": EPOCH, "kind": "access_event", "ref": EVENT_OVERRIDE,
         "payload": json.dumps({"event_id": EVENT_OVERRIDE, "holder": "急救车 120"},
                               ensure_ascii=False),
         "created_at": at("2026-12-03 23:05:40"), "acked_at": None},
        {"seq": 1042, "epoch": EPOCH, "kind": "duty_log", "ref": "1",
         "payload": json.dumps({"id": 1, "text": "22:00 巡逻一圈"}, ensure_ascii=False),
         "created_at": at("2026-12-03 22:00:05"), "acked_at": None},
    ],
    "users": [
        {"id": 1, "name": "老张", "role": "guard", "token_hash": users.hash_token(GUARD_TOKEN),
         "created_at": at("2026-11-01 08:00"), "revoked_at": None,
         "password_hash": users.hash_password(GUARD_PASSWORD),
         "password_set_at": at("2026-11-01 08:05")},
        {"id": 2, "name": "王主任", "role": "control",
         "token_hash": users.hash_token(CONTROL_TOKEN), "created_at": at("2026-11-01 08:01"),
         "revoked_at": None, "password_hash": None, "password_set_at": None},
        {"id": 3, "name": "小李", "role": "guard", "token_hash": users.hash_token("gone-xiaoli"),
         "created_at": at("2026-06-01 08:00"), "revoked_at": at("2026-11-30 18:00"),
         "password_hash": None, "password_set_at": None},
    ],
    "audit_log": [
        {"id": 1, "at": at("2026-12-03 10:00:01"), "by": "admin", "action": "unmask:events",
         "subject": "events 2", "prev_hash": "",  # (from 0012: the chain's first entry)
         "hash": audit.entry_hash("", at("2026-12-03 10:00:01"), "admin", "unmask:events",
                                  "events 2")},
    ],
    "confiscations": [
        {"id": 1, "pass_id": LENT_PASS, "gate": "main", "reason": "冒用他人证件", "by": "老张",
         "at": at("2026-12-03 22:30")},
    ],
    "goods_slips": [
        {"id": 1, "number": "GS-2026-000187", "unit": "5-1-0801", "owner": "刘芳",
         "bearer": "搬家公司 周师傅", "authorisation": "written",
         "authorisation_detail": json.dumps({"delegate": "周师傅", "signer": "刘芳"},
                                            ensure_ascii=False),
         "items": json.dumps([{"name": "冰箱", "qty": 1, "hazard": False},
                              {"name": "液化气罐", "qty": 1, "hazard": True}],
                             ensure_ascii=False),
         "hazard_allowed": 1, "valid_from": at("2026-12-02 08:00"),
         "valid_until": at("2026-12-02 18:00"), "approver": "物业客服 小何", "status": "released",
         "issued_by": "老张", "issued_at": at("2026-12-01 16:45"), "closed_by": "老张",
         "closed_at": at("2026-12-02 09:40"), "gate": "main", "notes": "少一把椅子",
         "snapshot_id": 3, "version": 2, "origin": "office"},
    ],
    "visitors": [
        {"id": 1, "name": "陈静", "id_hash": VISITOR_ID_HASH, "id_last4": VISITOR_ID_LAST4,
         "host_unit": "2-1-0603", "purpose": "探亲", "plate": "粤B·12345",
         "card_key": LENT.key, "pass_id": LENT_PASS, "gate": "main", "registered_by": "老张",
         "registered_at": at("2026-12-03 09:10"), "confirmed_by": "老张",
         "confirmed_how": "intercom", "entered_at": at("2026-12-03 09:12"),
         "exited_at": at("2026-12-03 20:47"), "exited_by": "老张", "expected_id": None},
        {"id": 2, "name": "张家教", "id_hash": None, "id_last4": None, "host_unit": "5-1203",
         "purpose": "tutor", "plate": None, "card_key": None, "pass_id": None, "gate": None,
         "registered_by": "老张", "registered_at": at("2026-12-06 18:05"),
         "confirmed_by": "老张", "confirmed_how": "announced",
         "entered_at": at("2026-12-06 18:05"), "exited_at": None, "exited_by": None,
         "expected_id": "e1"},
    ],
    "alarms": [
        {"id": 1, "uid": "alarm-input:7:1764720840", "type": "fire", "priority": 1,
         "source": "alarm-input:7", "location": "3号楼", "floor": "12", "room": "1203",
         "gate": "main", "notes": "烟感报警", "route_to": "director", "raised_by": "老张",
         "active": 0, "count": 3, "raised_at": at("2026-12-03 02:14:00"),
         "last_active_at": at("2026-12-03 02:15:30"), "cleared_at": at("2026-12-03 02:16"),
         "acked_at": at("2026-12-03 02:14:20"), "acked_by": "王主任",
         "shelved_until": at("2026-12-03 03:00"), "shelved_by": "王主任",
         "shelve_reason": "维修中", "state": "closed", "dispatched_to": "巡逻二组",
         "dispatched_at": at("2026-12-03 02:14:40"), "dispatched_by": "王主任",
         "resolution": "false_alarm", "resolution_notes": "厨房油烟触发烟感",
         "resolved_by": "王主任", "resolved_at": at("2026-12-03 02:40"),
         "closed_at": at("2026-12-03 02:45"), "escalation_level": 1,
         "escalated_at": at("2026-12-03 02:14:15"),
         "checklist": json.dumps([{"step": "通知消防控制室", "done_at": at("2026-12-03 02:14:30"),
                                   "by": "王主任"}], ensure_ascii=False),
         "snapshot_id": 3},
    ],
    "alarm_log": [
        {"id": 1, "alarm_id": 1, "at": at("2026-12-03 02:14:20"), "by": "王主任",
         "action": "acked", "detail": "已确认，派巡逻二组"},
    ],
    "duty_log": [
        {"id": 1, "at": at("2026-12-03 22:00:05"), "by": "老张", "category": "patrol",
         "text": "22:00 巡逻一圈，3号楼消防通道畅通", "alarm_id": 1},
    ],
    "emergency_records": [
        {"id": 1, "alarm_id": 1, "cause": "厨房油烟", "responsible": "1203 业主",
         "remedial": "开窗通风，复位烟感", "preventive": "提醒业主使用油烟机", "results": "无损失",
         "by": "王主任", "at": at("2026-12-03 03:00"), "results_by": "王主任",
         "results_at": at("2026-12-03 08:00")},
    ],
    "handovers": [
        {"id": 1, "shift": "night", "shift_start": at("2026-12-02 20:00"),
         "created_at": at("2026-12-03 07:55"), "created_by": "王主任",
         "report": json.dumps({"open_alarms": 0, "notes": "火警误报一次"}, ensure_ascii=False),
         "report_sha256": "0d" * 32, "override_by": "总监 赵", "override_reason": "P1 已现场处理",
         "outgoing_by": "王主任", "outgoing_at": at("2026-12-03 07:58"),
         "incoming_by": "刘班长", "incoming_at": at("2026-12-03 08:01")},
    ],
    "snapshots": [
        {"id": 1, "camera": "cam-main", "gate": "main", "ref_kind": "event",
         "ref_id": EVENT_GRANT, "path": "snapshots/2026/12/03/1.jpg", "sha256": "a7" * 32,
         "bytes": 48213, "event_ts": at("2026-12-03 07:41:12.317"),
         "captured_at": at("2026-12-03 07:41:12.2"), "age_ms": 117, "stale": 0,
         "deleted_at": None, "office_at": at("2026-12-03 07:41:15")},
        {"id": 2, "camera": "cam-side", "gate": "side", "ref_kind": "event",
         "ref_id": EVENT_OVERRIDE, "path": None, "sha256": None, "bytes": 0,
         "event_ts": at("2026-12-03 23:05:40"), "captured_at": None, "age_ms": None,
         "stale": 1, "deleted_at": None, "office_at": None},
        {"id": 3, "camera": "cam-main", "gate": "main", "ref_kind": "alarm", "ref_id": "1",
         "path": "snapshots/2026/12/03/3.jpg", "sha256": "b8" * 32, "bytes": 51002,
         "event_ts": at("2026-12-03 02:14:00"), "captured_at": at("2026-12-03 02:14:00.4"),
         "age_ms": 400, "stale": 0, "deleted_at": at("2026-12-04 03:00"), "office_at": None},
    ],
    "permits": [
        {"permit_no": "ZX-2026-001", "unit": "8-0801", "company": "华美装饰",
         "scope": "厨卫改造", "valid_from": at("2026-12-01 08:00"),
         "valid_until": at("2027-01-31 18:00"), "status": "suspended",
         "status_reason": "停工整顿", "version": 2, "updated_at": at("2026-12-04 10:00")},
    ],
    "units": [{"unit": "5-1203"}, {"unit": "8-0801"}],
    "patrol_reads": [
        {"id": 1, "tag": "0000900001", "checkpoint": "north", "guard": "巡逻员老王",
         "device": "wand-1", "source": "wand", "at": at("2026-12-06 09:05"),
         "recorded_at": at("2026-12-06 10:00")},
        {"id": 2, "tag": "0000900099", "checkpoint": None, "guard": None, "device": None,
         "source": "api", "at": at("2026-12-06 09:06"), "recorded_at": at("2026-12-06 10:00")},
    ],
    "fault_notices": [
        {"id": 1, "number": "GZ-2026-0001", "place": "5栋消防通道", "category": "fire",
         "description": "堆放杂物", "photo_sha256": "f3" * 32, "round_id": 1,
         "reported_by": "巡逻员老王", "reported_at": at("2026-12-06 09:40"),
         "received_by": "值班员", "received_at": at("2026-12-06 09:45"),
         "closed_by": "工程部小刘", "closed_at": at("2026-12-06 11:00"),
         "repair_notes": "已清理"},
    ],
    "notifications": [
        {"id": 1, "ref": "alarm:1", "alarm_id": 1, "channel": "duty", "event": "escalated",
         "level": 1, "priority": 1, "title": "【P1】火警 无人确认，已升级（第 1 级）",
         "body": "地点：3号楼", "unit": "5-1203", "queued_at": at("2026-12-06 10:00"),
         "state": "sent", "attempts": 2, "sent_at": at("2026-12-06 10:02"),
         "last_error": "connection refused"},
    ],
    "gate_modes": [
        {"gate": "east-main", "mode": "locked", "until": at("2026-12-06 12:00"), "reason": "抢劫",
         "set_by": "值班员", "set_at": at("2026-12-06 10:05")},
    ],
    "door_events": [
        {"id": 1, "gate": "east-main", "ts": at("2026-12-06 10:00"), "what": "forced"},
        {"id": 2, "gate": "east-main", "ts": at("2026-12-06 10:01"), "what": "closed"},
    ],
    "patrol_rounds": [
        {"id": 1, "route": "garden", "planned_at": at("2026-12-06 09:00"),
         "ends_at": at("2026-12-06 09:30"), "status": "incomplete", "read": '["north"]',
         "missing": '["south"]', "guards": "巡逻员老王", "alarm_id": 1,
         "judged_at": at("2026-12-06 09:30:30")},
    ],
    "expected_visitors": [
        {"id": "e1", "code": "20261206", "host_unit": "5-1203", "name": "张家教",
         "category": "tutor", "valid_from": at("2026-12-06 18:00"),
         "valid_until": at("2026-12-06 20:00"), "entries": 2, "used": 1, "status": "active",
         "version": 1},
    ],
    "rectifications": [
        {"id": 1, "number": "ZG-2026-0001", "unit": "8-0801", "permit_no": "ZX-2026-001",
         "issue": "阳台违规搭建", "deadline": at("2026-12-05 18:00"), "issued_by": "门卫老张",
         "issued_at": at("2026-12-04 10:00"), "closed_at": at("2026-12-05 17:00"),
         "closed_by": "门卫小李", "inspected_by": "巡逻岗小周", "notes": "已拆除"},
    ],
    "alarm_deadlines": [
        {"id": 1, "alarm_id": 1, "stage": "dispatched", "due_at": at("2026-12-03 03:14"),
         "met_at": at("2026-12-03 03:20"), "overdue_at": at("2026-12-03 03:14:01")},
        {"id": 2, "alarm_id": 1, "stage": "resolved", "due_at": at("2026-12-03 04:14"),
         "met_at": None, "overdue_at": None},
    ],
    "keys": [
        {"id": "B5-1203", "label": "5栋1203 入户门", "kind": "unit", "unit": "5-1203",
         "quantity": 2, "contractor": None, "responsible": None, "created_by": "陈主管",
         "created_at": at("2026-12-05 08:00"), "retired_at": None},
        {"id": "R-0801", "label": "8栋0801 装修房", "kind": "unit", "unit": "8-0801",
         "quantity": 1, "contractor": "华美装饰", "responsible": "李工", "created_by": "陈主管",
         "created_at": at("2026-12-05 08:00"), "retired_at": at("2026-12-06 10:00")},
    ],
    "key_loans": [
        {"id": 1, "key_id": "B5-1203", "quantity": 1, "borrower": "张三",
         "borrower_kind": "other", "company": None, "phone": "13800138000", "reason": "维修",
         "signature_sha256": "d1" * 32, "approved_by": "陈主管", "lent_by": "门卫老张",
         "lent_at": at("2026-12-05 09:00"), "due_at": at("2026-12-08 09:00"),
         "returned_at": None, "returned_by": None, "returned_count": None,
         "inspected_by": None, "inspected_at": None, "inspection_notes": None, "lost_at": None,
         "lost_count": None, "closed_at": None, "overdue_alarm_id": 1, "notes": "急用"},
        {"id": 2, "key_id": "R-0801", "quantity": 1, "borrower": "李工",
         "borrower_kind": "contractor", "company": "华美装饰", "phone": "13900139000",
         "reason": "装修", "signature_sha256": "e2" * 32, "approved_by": None,
         "lent_by": "门卫老张", "lent_at": at("2026-12-05 09:30"), "due_at": at("2026-12-08 09:30"),
         "returned_at": at("2026-12-06 09:00"), "returned_by": "门卫小李", "returned_count": 0,
         "inspected_by": "巡逻岗小周", "inspected_at": at("2026-12-06 10:00"),
         "inspection_notes": "墙面污损", "lost_at": at("2026-12-06 09:00"), "lost_count": 1,
         "closed_at": at("2026-12-06 10:00"), "overdue_alarm_id": None, "notes": None},
    ],
}  # fmt: skip

# What a row made before a column's migration holds in it afterwards (the models' defaults)
EDGE_ADDED: dict[tuple[str, str], Any] = {
    ("access_events", "by"): None,  # 0002
    ("access_events", "notes"): None,
    ("passes", "issued_by"): None,
    ("passes", "updated_by"): None,
    ("access_events", "snapshot_id"): None,  # 0004
    ("alarms", "snapshot_id"): None,
    ("goods_slips", "snapshot_id"): None,
    ("goods_slips", "version"): 1,  # 0005
    ("goods_slips", "origin"): "local",
    ("users", "password_hash"): None,  # 0009: the bearer token only, until a password is set
    ("users", "password_set_at"): None,
    ("passes", "photo_sha256"): None,  # 0010
    ("passes", "origin"): "local",  # 0011
    ("audit_log", "prev_hash"): None,  # 0012: the chain starts after the entries kept
    ("audit_log", "hash"): None,
    ("snapshots", "office_at"): None,  # 0014: not yet sent
    ("visitors", "expected_id"): None,  # 0020: registered at the gate, not announced
}


def sqlite_tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Each table's columns (Alembic's own table left out)."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name != 'alembic_version' ORDER BY name")]  # fmt: skip
    return {n: [r[1] for r in conn.execute(f"PRAGMA table_info({n})")] for n in names}


def sqlite_dump(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by rowid, each value with its storage class."""
    out = {}
    for table in sqlite_tables(conn):
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
        names = [d[0] for d in cur.description]
        out[table] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return out


def typed(row: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """A row whose values compare with their type: 1 is not 1.0, '1' is not 1."""
    return {k: (type(v).__name__, v) for k, v in row.items()}


def edge_at(path: Path, revision: str) -> None:
    """A new gate database at ``revision``, as the release that ended there made it."""
    eng = db.engine(path)
    try:
        with eng.begin() as c:
            EDGE_ALEMBIC.attributes["connection"] = c
            command.upgrade(EDGE_ALEMBIC, revision)
    finally:
        eng.dispose()


def fill_edge(path: Path) -> dict[str, list[dict[str, Any]]]:
    """EDGE_ROWS into every table the database has (the columns it has); what it holds."""
    conn = sqlite3.connect(path)
    try:
        tables = sqlite_tables(conn)
        for table, columns in tables.items():
            if table == "sqlite_sequence":  # SQLite's own: AUTOINCREMENT fills it
                continue
            assert table in EDGE_ROWS, f"the fixture has no rows for table {table}: add some"
            for column in columns:
                assert any(r[column] is not None for r in EDGE_ROWS[table]), (
                    f"the fixture gives {table}.{column} no value: give it one"
                )
            for row in EDGE_ROWS[table]:
                conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) "
                             f"VALUES ({', '.join('?' * len(columns))})",
                             [row[c] for c in columns])  # fmt: skip
        conn.commit()
        return sqlite_dump(conn)
    finally:
        conn.close()


def check_edge_kept(before: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Every row as it was (its new columns at their defaults), at the newest revision."""
    conn = sqlite3.connect(path)
    try:
        after = sqlite_dump(conn)
        (stamp,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    finally:
        conn.close()
    assert stamp == EDGE_REVISIONS[-1]
    assert set(before) <= set(after), f"tables gone: {set(before) - set(after)}"
    for table, rows in before.items():
        assert len(after[table]) == len(rows), (
            f"{table}: {len(rows)} rows became {len(after[table])}"
        )
        for old, new in zip(rows, after[table], strict=True):
            assert typed({c: new[c] for c in old}) == typed(old), f"{table}: a row changed"
            for column in set(new) - set(old):
                assert (table, column) in EDGE_ADDED, f"{table}.{column}: name its default"
                assert new[column] == EDGE_ADDED[table, column], f"{table}.{column}"
    for table in set(after) - set(before):  # a table a later migration made starts empty
        assert after[table] == [], table


def said_by(config: Path, *args: str) -> Any:
    """What a ``gatehouse --json`` command printed (its stderr, if it printed nothing)."""
    out = cli(config, "--json", *args)
    assert out.stdout.strip(), f"gatehouse {' '.join(args)}: {out.stderr}"
    return json.loads(out.stdout)


def upgraded_gate(workdir: Path, revision: str) -> tuple[Path, int, dict[str, list[dict]]]:
    """A gate's config, its API port, and its database made at ``revision``, filled, and
    upgraded with every row checked; what the database held before the upgrade."""
    port = free_port()
    config = write_config(workdir / "gatehouse.toml", broker_port=None, readers=[],
                          api_port=port)  # fmt: skip
    data = workdir / "var"
    (data / "keys").mkdir(parents=True)
    (data / "keys" / "id_hash.key").write_text(ID_KEY)  # the gate's key, kept by its backup
    path = data / "edge.db"
    edge_at(path, revision)
    before = fill_edge(path)
    assert before["sqlite_sequence"] == [{"name": "outbox", "seq": 1042}]
    db.migrate(path)  # what every command and the service do first
    check_edge_kept(before, path)
    return config, port, before


@pytest.mark.parametrize("revision", EDGE_REVISIONS)
def test_a_gate_database_of_an_earlier_release_keeps_every_row(tmp_path: Path, revision: str):
    config, _, before = upgraded_gate(tmp_path, revision)
    data = config.parent / "var"
    path = data / "edge.db"

    # the service on it: the worker still opens the main gate, the lent card is refused
    said = said_by(config, "check", WORKER.hex, "--at", "2026-12-08T10:00")
    assert (said["decision"], said["pass_id"], said["holder"]) == ("grant", WORKER_PASS, "王建国")
    refused = said_by(config, "check", LENT.hex, "--at", "2026-12-08T10:00")
    assert (refused["decision"], refused["reason"]) == ("deny", "revoked")
    listed = said_by(config, "pass", "list")["items"]
    assert {p["id"]: p["status"] for p in listed} == {
        WORKER_PASS: "active",
        OFFICE_RES: "active",
        LENT_PASS: "revoked",
    }
    conn = db.connect(path)
    try:
        assert outbox.next_seq(conn) == 1043  # no seq handed out before is handed out again
        assert HASHER.digest("110101199003071234")[0] == db.row(
            conn, "SELECT id_hash FROM passes WHERE id = ?", (WORKER_PASS,)
        )["id_hash"]  # fmt: skip
        known = users.check_password(conn, "老张", GUARD_PASSWORD)
        assert known == (("老张", "guard") if revision >= "0009" else None)
    finally:
        conn.close()
    with in_process(data) as svc:  # the API the guard's screen and the control room read
        client = TestClient(create_app(svc))
        admin = bearer(svc, "新来的管理员", "admin")  # one added after the upgrade
        for token, role in ((GUARD_TOKEN, "guard"), (CONTROL_TOKEN, "control")):
            old = client.get("/api/v1/events", headers={"Authorization": f"Bearer {token}"})
            assert old.status_code == (200 if "users" in before else 401), role
        events = client.get("/api/v1/events", headers=admin).json()["items"]
        assert [e["event_id"] for e in events] == [EVENT_OVERRIDE, EVENT_GRANT]
        assert events[0]["notes"] == ("送医急救车，未刷卡" if revision >= "0002" else None)
        shown = client.get("/api/v1/alarms?closed=true", headers=admin).json()["items"]
        log = client.get("/api/v1/duty-log?day=2026-12-03", headers=admin).json()["items"]
        handovers = client.get("/api/v1/handovers", headers=admin).json()["items"]
        if "alarms" in before:  # the control room's tables (0003)
            assert [(a["id"], a["type"], a["state"]) for a in shown] == [(1, "fire", "closed")]
            assert [e["text"] for e in log] == ["22:00 巡逻一圈，3号楼消防通道畅通"]
            assert [(h["id"], h["signed"]) for h in handovers] == [(1, True)]
        slip = client.get("/api/v1/slips/GS-2026-000187", headers=admin)
        if "goods_slips" in before:  # the guard desk's (0002)
            assert (slip.json()["status"], slip.json()["owner"]) == ("released", "刘芳")


# -- the office's database as the old release left it ------------------------------------


def _slip(**fields: Any) -> dict[str, Any]:
    base = {"unit": "5-1-0801", "owner": "刘芳", "bearer": "周师傅", "authorisation": "written",
            "authorisation_detail": {"delegate": "周师傅", "signer": "刘芳"},
            "items": [{"name": "冰箱", "qty": 1, "hazard": False}], "hazard_allowed": 0,
            "approver": "小何", "issued_by": "周敏", "closed_at": None, "closed_by": None,
            "gate": None, "node_id": None, "notes": None, "site": "default",
            "_since": "0002"}  # fmt: skip
    return base | fields


OFFICE_SLIPS = [
    _slip(number="FO-2026-7", valid_from=at("2026-11-20 08:00"),
          valid_until=at("2026-11-20 18:00"), status="released", version=2,
          issued_at=at("2026-11-19 16:00"), closed_at=at("2026-11-20 09:40"), closed_by="老张",
          gate="main", node_id="gate-east", notes="少一把椅子"),
    _slip(number="FO-2026-8", valid_from=at("2026-11-25 08:00"),
          valid_until=at("2026-11-25 18:00"), status="cancelled", version=2,
          issued_at=at("2026-11-24 10:00"), closed_at=at("2026-11-24 11:00"), closed_by="周敏",
          notes="业主取消"),
]  # fmt: skip


def _change(change_id: int, entity: str, record: dict[str, Any], version: int, op: str,
            committed_at: float, **was: Any) -> dict[str, Any]:  # fmt: skip
    """A change as the office logged it: its payload is the record as it then stood (built
    from the record's columns at the revision, ``payload_of``)."""
    key = "id" if entity == "pass" else "number"
    gates = record.get("gates")
    return {"change_id": change_id, "entity": entity, "entity_id": record[key],
            "version": version, "op": op, "payload": record, "committed_at": committed_at,
            "stamp": STAMPS[change_id], "site": record["site"],
            "gates": gates.split(",") if entity == "pass" and gates else None,
            "was_site": was.get("site"), "was_gates": was.get("gates"),
            "_since": record.get("_since", "0001")}  # fmt: skip


_RES, _WORK, _SIDE, _NORTH = OFFICE_PASSES
OFFICE_CHANGES = [
    _change(1, "pass", _RES, 1, "upsert", at("2026-02-27 10:03:41")),
    _change(2, "pass", _SIDE, 1, "upsert", at("2026-06-30 09:00")),
    _change(3, "pass", _WORK | {"status": "active", "status_reason": None, "version": 1,
                                "updated_by": "周敏", "updated_at": at("2026-10-07 15:30")},
            1, "upsert", at("2026-10-07 15:30")),
    _change(4, "pass", _WORK, 2, "revoke", at("2026-11-28 17:45:12.75"), site="default",
            gates=["main", "side"]),
    _change(5, "slip", OFFICE_SLIPS[0] | {"status": "issued", "version": 1, "closed_at": None,
                                          "closed_by": None, "gate": None, "node_id": None,
                                          "notes": None}, 1, "upsert", at("2026-11-19 16:00")),
    _change(6, "slip", OFFICE_SLIPS[0], 2, "upsert", at("2026-11-20 09:40:02")),
    _change(7, "slip", OFFICE_SLIPS[1], 2, "upsert", at("2026-11-24 11:00")),
    _change(8, "pass", _NORTH, 1, "upsert", at("2026-12-05 09:00")),
]  # fmt: skip


def _event(node: str, epoch: int, seq: int, kind: str, payload: dict[str, Any] | str,
           received_at: float) -> dict[str, Any]:  # fmt: skip
    """A gate's record as the office stored it: the hash is over the payload's text."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    body = json.loads(text)
    return {"node_id": node, "epoch": epoch, "seq": seq, "kind": kind,
            "ref": str(body.get("event_id") or body.get("id") or body.get("number")),
            "payload": body, "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "received_at": received_at}  # fmt: skip


OFFICE_EVENTS = [  # received over four months (by UTC, as 0008 partitions), and a bad clock
    _event("gate-east", EPOCH, 1035, "access_event",
           {"event_id": "e1035", "ts": at("2026-09-14 09:30:00"), "gate": "main",
            "decision": "grant", "reason": "ok", "pass_id": OFFICE_RES, "holder": "李秀英"},
           at("2026-09-14 09:30:01")),
    _event("gate-east", EPOCH, 1036, "confiscation",
           {"id": 1, "at": utc("2026-10-31T23:59:59.5"), "gate": "main",
            "pass_id": OFFICE_WORK, "reason": "冒用"},
           utc("2026-10-31T23:59:59.5")),  # the last half second of October
    _event("gate-east", EPOCH, 1037, "access_event",
           {"event_id": "e1037", "ts": utc("2026-11-01T00:00:00"), "gate": "main",
            "decision": "deny", "reason": "revoked", "pass_id": OFFICE_WORK},
           utc("2026-11-01T00:00:00")),  # the first instant of November
    _event("gate-east", EPOCH, 1038, "alarm",
           {"id": 1, "action": "raised", "type": "fire", "at": at("2026-11-20 02:14")},
           at("2026-11-20 02:14:01")),
    _event("gate-east", EPOCH, 1039, "slip_released",
           {"number": "FO-2026-7", "closed_at": at("2026-11-20 09:40"), "gate": "main"},
           at("2026-11-20 09:40:01")),
    _event("gate-east", EPOCH, 1040, "access_event", GRANT_PAYLOAD, at("2026-12-03 07:41:13")),
    _event("gate-west", OLD_EPOCH, 1, "access_event",
           {"event_id": "w1", "ts": 86400.5, "gate": "west", "decision": "grant",
            "reason": "ok"}, 86400.5),  # a gate whose clock said 1970
]  # fmt: skip

OFFICE_ROWS: dict[str, list[dict[str, Any]]] = {
    "nodes": [
        {"node_id": "gate-east", "token_hash": users.hash_token(EAST_TOKEN),
         "created_at": at("2026-02-20 10:00"), "last_seen_at": at("2026-12-04 22:00:06"),
         "revoked_at": None, "clock_offset_s": 0.8, "flagged_at": None, "site": "default",
         "gates": None, "rotated_at": None},
        {"node_id": "gate-west", "token_hash": users.hash_token("retired-gate-west"),
         "created_at": at("2025-05-01 10:00"), "last_seen_at": at("2026-06-30 23:00"),
         "revoked_at": at("2026-07-01 09:00"), "clock_offset_s": -3.5,
         "flagged_at": at("2026-06-30 23:00"), "site": "default", "gates": ["west"],
         "rotated_at": at("2026-03-01 09:00")},
    ],
    "users": [
        {"name": "周敏", "role": "clerk", "token_hash": users.hash_token(CLERK_TOKEN),
         "created_at": at("2026-02-01 09:00"), "revoked_at": None,
         "password_hash": users.hash_password(CLERK_PASSWORD),
         "password_set_at": at("2026-02-01 09:05")},
        {"name": "陈主管", "role": "admin", "token_hash": users.hash_token(ADMIN_TOKEN),
         "created_at": at("2026-02-01 08:30"), "revoked_at": None, "password_hash": None,
         "password_set_at": None},
        {"name": "吴磊", "role": "clerk", "token_hash": users.hash_token("gone-wulei"),
         "created_at": at("2026-02-01 09:10"), "revoked_at": at("2026-08-31 18:00"),
         "password_hash": None, "password_set_at": None},
    ],
    "passes": OFFICE_PASSES,
    "slips": OFFICE_SLIPS,
    "photos": [{"sha256": PHOTO_SHA, "jpeg": PHOTO, "created_at": at("2026-02-27 10:02"),
                "created_by": "周敏", "_since": "0004"}],
    "change_log": OFFICE_CHANGES,
    "edge_events": OFFICE_EVENTS,
    "edge_cursors": [
        {"node_id": "gate-east", "epoch": EPOCH, "base": EPOCH_BASE, "contiguous_hwm": 1040,
         "max_seen": 1040, "closed_from": None},
        {"node_id": "gate-east", "epoch": OLD_EPOCH, "base": 1, "contiguous_hwm": 2,
         "max_seen": 4, "closed_from": 3},
        {"node_id": "gate-west", "epoch": OLD_EPOCH, "base": 1, "contiguous_hwm": 1,
         "max_seen": 1, "closed_from": None},
    ],
    "anomalies": [
        {"at": at("2026-11-01 08:00:00"), "node_id": "gate-east",
         "kind": "used_after_revocation",
         "detail": f"pass {OFFICE_WORK} used at main after its revocation"},
        {"at": at("2026-11-02 08:00:00"), "node_id": None, "kind": "gap",
         "detail": "gate-east epoch 905117: seq 3 never came"},
    ],
    "set_aside": [
        {"received_at": at("2026-11-02 07:59"), "node_id": "gate-east", "epoch": OLD_EPOCH,
         "seq": 3, "kind": "access_event", "reason": "seq 3 came again with other content",
         "raw": b"3\taccess_event\te3\t00\t{\"gate\": \"main\\u0000\"}\n",
         "_since": "0005"},
    ],
    "office_meta": [{"key": "log_id", "value": LOG_ID, "_since": "0005"}],
    "sites": [{"site_id": "north", "name": "北园", "gates": ["north-1", "north-2"],
               "created_at": at("2026-12-05 08:00"), "snapshots": "alarms",
               "snapshot_days": 14, "_since": "0007"}],
    "expected_visitors": [
        {"id": "e1", "code": "20261206", "site": "north", "host_unit": "5-1203",
         "name": "张家教", "category": "tutor", "valid_from": at("2026-12-06 18:00"),
         "valid_until": at("2026-12-06 20:00"), "entries": 2, "status": "active", "version": 1,
         "created_by": "客服小王", "created_at": at("2026-12-05 08:00"),
         "updated_at": at("2026-12-05 08:00"), "_since": "0012"},
    ],
    "units": [
        {"site": "north", "unit": "5-1203", "created_by": "客服小王",
         "created_at": at("2026-12-05 08:00"), "_since": "0011"},
    ],
    "permits": [
        {"permit_no": "ZX-2026-001", "site": "north", "unit": "8-0801", "company": "华美装饰",
         "scope": "厨卫改造", "valid_from": at("2026-12-01 08:00"),
         "valid_until": at("2027-01-31 18:00"), "status": "suspended",
         "status_reason": "停工整顿", "version": 2, "issued_by": "客服小王",
         "issued_at": at("2026-12-01 08:00"), "updated_by": "客服小王",
         "updated_at": at("2026-12-04 10:00"), "_since": "0010"},
    ],
    "snapshots": [
        {"sha256": "b8" * 32, "jpeg": b"\xff\xd8\xff\xe0 a picture \xff\xd9",
         "stored_sha256": "c9" * 32, "reduced": True, "site": "north",
         "node_id": "gate-east", "snapshot_id": "3", "ref_kind": "alarm",
         "received_at": at("2026-12-05 08:01"), "_since": "0009"},
    ],
    "audit": [{"at": at("2026-12-05 08:00"), "who": "陈主管", "action": "site_add",
               "target": "north", "detail": {"name": "北园", "gates": ["north-1", "north-2"]},
               "_since": "0007"}],
}  # fmt: skip

# Each table's key (edge_events by the key it had: 0008 adds received_at to it)
OFFICE_KEYS = {
    "nodes": ("node_id",), "users": ("name",), "passes": ("id",), "slips": ("number",),
    "photos": ("sha256",), "change_log": ("change_id",), "edge_events": ("node_id", "epoch", "seq"),
    "edge_cursors": ("node_id", "epoch"), "anomalies": ("id",), "set_aside": ("id",),
    "office_meta": ("key",), "sites": ("site_id",), "audit": ("id",), "snapshots": ("sha256",),
    "permits": ("permit_no",), "units": ("site", "unit"), "expected_visitors": ("id",),
}  # fmt: skip


def _scope_gates(row: dict[str, Any]) -> list[str] | None:
    """0007: a pass's change is for the gates its payload names (NULL: all of them)."""
    gates = row["payload"].get("gates") if row["entity"] == "pass" else None
    return gates.split(",") if gates else None


OFFICE_ADDED: dict[tuple[str, str], Any] = {
    ("users", "password_hash"): None,  # 0003: the token only, until a password is set
    ("users", "password_set_at"): None,
    ("users", "site"): None,  # 0013: a host's unit; clerks and admins have none
    ("users", "unit"): None,
    ("passes", "photo_sha256"): None,  # 0004
    ("change_log", "stamp"): None,  # 0005
    ("edge_cursors", "closed_from"): None,
    ("sites", "snapshots"): "off",  # 0009: records only, as before
    ("sites", "snapshot_days"): 30,
    ("nodes", "clock_offset_s"): None,
    ("nodes", "flagged_at"): None,
    ("nodes", "site"): "default",  # 0007: an office from before sites is all one site
    ("nodes", "gates"): None,
    ("nodes", "rotated_at"): None,
    ("passes", "site"): "default",
    ("slips", "site"): "default",
    ("change_log", "site"): "default",
    ("change_log", "gates"): _scope_gates,
    ("change_log", "was_site"): None,
    ("change_log", "was_gates"): None,
}


def pg_tables(cur: Any) -> dict[str, dict[str, str]]:
    """Each table's columns and their types (a month of edge_events is part of its table)."""
    cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
                "AND NOT c.relispartition AND c.relname <> 'alembic_version'")  # fmt: skip
    names = sorted(r[0] for r in cur.fetchall())
    out = {}
    for name in names:
        cur.execute("SELECT column_name, data_type, column_default FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                    (name,))  # fmt: skip
        out[name] = {c: "serial" if (d or "").startswith("nextval") else t
                     for c, t, d in cur.fetchall()}  # fmt: skip
    return out


def pg_dump(cur: Any) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every row of every table, by its key."""
    out = {}
    for table in pg_tables(cur):
        cur.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cur.description]
        rows = [{n: bytes(v) if isinstance(v, memoryview) else v
                 for n, v in zip(names, r, strict=True)} for r in cur.fetchall()]  # fmt: skip
        out[table] = {tuple(r[k] for k in OFFICE_KEYS[table]): r for r in rows}
    return out


def payload_of(row: dict[str, Any], columns: dict[str, dict[str, str]], entity: str) -> Any:
    """A change's payload as that release logged it: the record's columns it had."""
    table = "passes" if entity == "pass" else "slips"
    return {c: row[c] for c in columns[table] if c in row}


def fill_office(pg_url: str, revision: str) -> dict[str, dict[tuple[Any, ...], dict]]:
    """OFFICE_ROWS into every table the database has (the columns it has); what it holds."""
    conn = psycopg2.connect(dbname=pg_url.rsplit("/", 1)[1])
    try:
        with conn, conn.cursor() as cur:
            tables = pg_tables(cur)
            for table, columns in tables.items():
                assert table in OFFICE_ROWS, f"the fixture has no rows for table {table}: add some"
                for column, kind in columns.items():
                    assert kind == "serial" or any(
                        r.get(column) is not None for r in OFFICE_ROWS[table]
                    ), f"the fixture gives {table}.{column} no value: give it one"
                for row in OFFICE_ROWS[table]:
                    if row.get("_since", "0001") > revision:
                        continue
                    if table == "change_log":
                        row = row | {"payload": payload_of(row["payload"], tables, row["entity"])}
                    names = [c for c in columns if c in row]
                    values = [Json(row[c]) if columns[c] == "jsonb" else row[c] for c in names]
                    key = OFFICE_KEYS[table]
                    if table == "edge_events" and revision >= "0008":  # partitioned by it
                        key = (*key, "received_at")
                    keys = ", ".join(key)
                    cur.execute(f"INSERT INTO {table} ({', '.join(names)}) "
                                f"VALUES ({', '.join(['%s'] * len(names))}) "
                                f"ON CONFLICT ({keys}) DO UPDATE SET "
                                + ", ".join(f"{c} = excluded.{c}" for c in names),
                                values)  # fmt: skip
            return pg_dump(cur)
    finally:
        conn.close()


def partition_of(received_at: float) -> str:
    """Where 0008 puts a record: its month (UTC) for the years 2000-2099, else the default."""
    d = datetime.fromtimestamp(received_at, UTC)
    return partitions.name(d.year, d.month) if 2000 <= d.year <= 2099 else partitions.DEFAULT


def check_office_kept(before: dict[str, dict], pg_url: str) -> dict[str, dict]:
    """Every row as it was (its new columns at their defaults), each of the gates' records
    in its month, at the newest revision; what the database holds."""
    conn = psycopg2.connect(dbname=pg_url.rsplit("/", 1)[1])
    try:
        with conn, conn.cursor() as cur:
            after = pg_dump(cur)
            cur.execute("SELECT version_num FROM alembic_version")
            assert cur.fetchone()[0] == OFFICE_REVISIONS[-1]
            cur.execute("SELECT node_id, epoch, seq, tableoid::regclass::text FROM edge_events")
            placed = {(n, e, s): p for n, e, s, p in cur.fetchall()}
    finally:
        conn.close()
    assert set(before) <= set(after), f"tables gone: {set(before) - set(after)}"
    for table, rows in before.items():
        assert set(after[table]) == set(rows), f"{table}: rows gone or added"
        for key, old in rows.items():
            new = after[table][key]
            assert typed({c: new[c] for c in old}) == typed(old), f"{table} {key} changed"
            for column in set(new) - set(old):
                assert (table, column) in OFFICE_ADDED, f"{table}.{column}: name its default"
                want = OFFICE_ADDED[table, column]
                want = want(new) if callable(want) else want
                assert new[column] == want, f"{table} {key}: {column} is {new[column]!r}"
    # the gates' records each in their month
    assert placed == {k: partition_of(r["received_at"]) for k, r in before["edge_events"].items()}
    return after


def office_at(eng: Engine, revision: str) -> None:
    with eng.begin() as c:
        OFFICE_ALEMBIC.attributes["connection"] = c
        command.upgrade(OFFICE_ALEMBIC, revision)


def upgraded_office(eng: Engine, pg_url: str, revision: str) -> tuple[dict, dict]:
    """An office database made at ``revision``, filled, and upgraded with every row
    checked: what it held before the upgrade and after."""
    office_at(eng, revision)
    before = fill_office(pg_url, revision)
    if revision >= "0008":  # from 0008 on, a push makes the month a record lands in
        with eng.begin() as c:
            for r in before["edge_events"].values():
                d = datetime.fromtimestamp(r["received_at"], UTC)
                if 2000 <= d.year <= 2099:
                    partitions.ensure(c, d.year, d.month)
    officedb.migrate(eng)  # what `gatehouse office` does at its start
    return before, check_office_kept(before, pg_url)


@pytest.fixture
def office_engine(pg_url: str) -> Iterator[Engine]:
    eng = officedb.engine(pg_url)
    yield eng
    eng.dispose()


@pytest.mark.parametrize("revision", OFFICE_REVISIONS[:-1])
def test_an_office_database_of_an_earlier_release_keeps_every_row(
    tmp_path: Path, pg_url: str, office_engine: Engine, revision: str
):
    before, after = upgraded_office(office_engine, pg_url, revision)

    # the tables a later migration made: empty, but the change log's identity (0005, new
    # for a log that had none) and the one site of an office from before sites (0007)
    for table in set(after) - set(before):
        rows = list(after[table].values())
        if table == "office_meta":
            assert [r["key"] for r in rows] == ["log_id"] and len(rows[0]["value"]) == 16
        elif table == "sites":
            assert [(r["site_id"], r["name"], r["gates"]) for r in rows] == [
                ("default", "默认小区", None)
            ]
        else:
            assert rows == [], table

    served_in_process(office_engine, revision, after)


def served_in_process(eng: Engine, revision: str, after: dict[str, dict]) -> None:
    """What the office does with the old rows, read through its own functions."""
    with eng.begin() as c:
        gate = office.node_of(c, EAST_TOKEN)
        assert gate == office.Node("gate-east", "default", None)
        assert office.node_of(c, "retired-gate-west") is None  # revoked stays revoked
        log_id = after["office_meta"][("log_id",)]["value"]  # from 0005 on, the old one
        assert recovery.log_id(c) == log_id == (LOG_ID if revision >= "0005" else log_id)
        page = office.changes_after(c, 0, 100, gate)
        ids = [ch["change_id"] for ch in page["changes"]]
        assert ids == sorted(k[0] for k, r in after["change_log"].items() if r["site"] == "default")
        assert page["changes"][0]["payload"]["name"] == "李秀英"
        report = office.monthly_report(c, "2026-11", TZ)  # the office's month, Shanghai time
        assert report["decisions"] == {"gate-east:deny": 1}
        assert report["confiscations"] == {"gate-east:main": 1}  # 07:59 on 1 November there
        assert report["alarms_by_type"] == {"fire": 1}
        assert report["gate_slips"] == {"gate-east:slip_released": 1}
        slips = (0, 1, 0, 1) if revision >= "0002" else (0, 0, 0, 0)  # slips came with 0002
        assert report["office_slips"] == dict(zip(reports.OFFICE_SLIP_STATUSES, slips,
                                                  strict=True))  # fmt: skip
        clerk = office.check_password(c, "周敏", CLERK_PASSWORD)
        assert clerk == (("周敏", "clerk") if revision >= "0003" else None)
        assert office.user_of(c, ADMIN_TOKEN) == ("陈主管", "admin")
        months = {p["month"] for p in partitions.months(c)}
        assert {"2026-09", "2026-10", "2026-11", "2026-12"} <= months
        for table in ("anomalies", "set_aside", "audit"):  # their ids go on from the old ones
            highest = c.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one()
            following = c.execute(text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"))
            assert following.scalar_one() > highest, table


def test_the_previous_release_gate_and_office_both_upgraded_carry_on(
    tmp_path: Path, pg_url: str, office_engine: Engine
):
    """The previous release's gate and its office, both upgraded, both running: the gate's
    records not yet sent arrive after the office's last (same epoch and base, this month's
    partition); its pull stays in the same change log (no reset, no gap) and brings the
    office's passes and photo; a card the office issued opens the gate; a confiscation there
    is followed at the office by the next change id of the old log."""
    upgraded_office(office_engine, pg_url, OFFICE_RELEASED)
    (tmp_path / "gate").mkdir()
    config, port, _ = upgraded_gate(tmp_path / "gate", EDGE_RELEASED)
    path = config.parent / "var" / "edge.db"
    keeper = Office(tmp_path / "office", pg_url).start()
    gate = Node(config, port)
    add_sync(gate, keeper, EAST_TOKEN)
    mine = "SELECT seq, kind, tableoid::regclass::text FROM edge_events WHERE node_id = %s "
    try:
        status, events = keeper.call("GET", "/api/v1/events?limit=100", CLERK_TOKEN)
        assert status == 200 and len(events["items"]) == len(OFFICE_EVENTS)
        gate.start(wait_ready=True)
        wait_for(lambda: len(pg_rows(pg_url, mine + "AND seq > 1040", "gate-east")) == 2, 20,
                 "the gate's two records not yet sent")  # fmt: skip
        this_month = partitions.name(*partitions.month_of(datetime.now(UTC).timestamp()))
        assert pg_rows(pg_url, mine + "AND epoch = %s AND seq > 1040 ORDER BY seq",
                       "gate-east", EPOCH) == [(1041, "access_event", this_month),
                                               (1042, "duty_log", this_month)]  # fmt: skip
        assert pg_rows(pg_url, "SELECT base, contiguous_hwm FROM edge_cursors "
                       "WHERE node_id = 'gate-east' AND epoch = %s", EPOCH) == [
            (EPOCH_BASE, 1042)
        ]  # fmt: skip
        wait_for(lambda: _listed(config) >= {OFFICE_RES, OFFICE_WORK, OFFICE_SIDE}, 20,
                 "the gate to pull the office's passes")  # fmt: skip
        conn = db.connect(path)
        try:
            assert db.get_meta(conn, "pull_log") == LOG_ID
            assert db.get_meta(conn, "epoch") == str(EPOCH)  # the same epoch: no new one
            unsent = conn.execute("SELECT seq FROM outbox WHERE acked_at IS NULL").fetchall()
            assert unsent == []
        finally:
            conn.close()
        said = gate.log.read_text()
        assert "change log is new" not in said, said  # the same log: its cursor held (no reset)
        # the old anomalies, and none since: nothing lost, resent or out of its scope
        kinds = pg_rows(pg_url, "SELECT kind FROM anomalies ORDER BY id")
        assert kinds == [("used_after_revocation",), ("gap",)]

        granted = said_by(config, "check", OFFICE_CARD.hex, "--at", "2026-12-08T10:00")
        assert (granted["decision"], granted["pass_id"]) == ("grant", OFFICE_RES), granted
        refused = said_by(config, "check", OFFICE_WORKER.hex, "--at", "2026-12-08T10:00")
        assert refused["reason"] == "revoked"
        base = f"http://127.0.0.1:{port}"
        photo = urllib.request.Request(
            f"{base}/api/v1/passes/{OFFICE_RES}/photo",
            headers={"Authorization": f"Bearer {GUARD_TOKEN}"},
        )
        with urllib.request.urlopen(photo, timeout=5) as r:
            assert r.read() == PHOTO
        status, slip = http_call(base, "GET", "/api/v1/slips/FO-2026-7", GUARD_TOKEN)
        assert (status, slip["status"], slip["gate"]) == (200, "released", "main")

        ((newest,),) = pg_rows(pg_url, "SELECT max(change_id) FROM change_log")
        status, _ = http_call(base, "POST", "/api/v1/confiscations", GUARD_TOKEN,
                              {"pass_id": OFFICE_RES, "reason": "冒用他人证件"})  # fmt: skip
        assert status == 201
        wait_for(lambda: pg_rows(pg_url, "SELECT status FROM passes WHERE id = %s",
                                 OFFICE_RES) == [("confiscated",)], 20,
                 "the office to follow the gate's confiscation")  # fmt: skip
        assert pg_rows(pg_url, "SELECT change_id, op, site FROM change_log "
                       "WHERE entity_id = %s AND change_id > %s", OFFICE_RES, newest) == [
            (newest + 1, "revoke", "default")
        ]  # fmt: skip
        taken = pg_rows(pg_url, mine + "AND epoch = %s AND seq > 1042",
                        "gate-east", EPOCH)  # fmt: skip
        assert ("confiscation", this_month) in {(kind, month) for _, kind, month in taken}
    finally:
        gate.stop()
        keeper.stop()


def _listed(config: Path) -> set[str]:
    out = cli(config, "--json", "pass", "list")
    return {p["id"] for p in json.loads(out.stdout)["items"]} if out.returncode == 0 else set()
