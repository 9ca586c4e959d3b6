"""Chinese for the API's refusals.

The API's contract is an English ``detail``: scripts, the sync peer and the logs read it, and
the raise sites in ``edge/`` and ``sync/`` name each problem in English. The guards and clerks
who see a refusal in the console read Chinese, so the console shows ``detail_zh``, made here
from the English text without touching any raise site.

``zh`` walks an ordered catalogue of (anchored regex, Chinese template) pairs. A catalogue
entry is written the way its raise site writes the message: ``{name}`` stands for a variable
part, ``{name!r}`` for a quoted one, ``{name:shape}`` for one of a given shape (``_SHAPES``).
The variable parts are carried into the template as they are (ids, numbers, names), except
where the group's name says they are words to translate too (``_CONVERTERS``: a status, a
role, a field, the list of allowed values, the problem after ``field:``...). A converter that
cannot translate its part makes the entry not apply, and the next one is tried; when none
applies ``zh`` answers None, and the console shows the English.

``validation_zh`` does the same for the 422 that FastAPI answers on a malformed body or
query (pydantic's ``errors()``). The words follow the console's own (``edge.console.text``):
a guard sees 注销, not another word for revoked, in both places. A test walks every raise site
and checks each message has its Chinese here (tests/test_messages.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

# -- words that stand in messages as variables ------------------------------------------------

STATUS_ZH: dict[str, str] = {
    # passes
    "active": "有效",
    "revoked": "已注销",
    "confiscated": "已没收",
    "expired": "已过期",
    "staged": "导入中（未生效）",
    # goods release slips
    "issued": "已开具",
    "released": "已放行",
    "rejected": "已拒绝放行",
    "cancelled": "已作废",
    "used": "已使用",
    # alarms
    "new": "新报警",
    "acknowledged": "已确认",
    "dispatched": "已派人",
    "resolved": "已处理",
    "closed": "已关闭",
    "suspended": "已暂停",
}

# what a slip is asked to become, as a verb: "slip N cannot be released"
ACTION_ZH: dict[str, str] = {
    "released": "放行",
    "rejected": "拒绝放行",
    "cancelled": "作废",
}

ROLE_ZH: dict[str, str] = {
    "guard": "门岗保安",
    "control": "监控中心值班员",
    "admin": "管理员",
    "clerk": "管理处文员",
}

FIELD_ZH: dict[str, str] = {
    # passes
    "pass_id": "通行证编号",
    "card": "卡号",
    "name": "姓名",
    "unit": "单位/房号",
    "kind": "证件类别",
    "id_number": "证件号",
    "valid_from": "生效时间",
    "valid_until": "有效期至",
    "gates": "可通行门岗",
    "daily_window": "每日通行时段",
    "permit_no": "装修许可证号",
    "photo": "照片",
    "snapshot": "抓拍照片",
    "snapshot_days": "抓拍照片保存天数",
    "snapshots": "抓拍照片上传",
    "status": "状态",
    "qr": "二维码",
    # the gate
    "gate": "门岗",
    "reason": "原因",
    "at": "时间",
    "since": "开始时间",
    "until": "结束时间",
    "mode": "大门状态",
    "day": "日期",
    "month": "月份",
    "shift": "班次",
    "limit": "条数",
    "cursor": "翻页位置",
    "decision": "通行结果",
    # goods release slips
    "number": "放行条编号",
    "owner": "业主/租户",
    "bearer": "携带人",
    "authorisation": "授权方式",
    "authorisation_detail": "授权信息",
    "delegate": "受托人",
    "moving_time": "搬运时间",
    "goods_list": "物品清单",
    "seal": "公司盖章",
    "signer": "签字人",
    "items": "物品",
    "qty": "数量",
    "hazard": "危险品类别",
    "hazard_allowed": "允许危险品",
    "approver": "审批人",
    "notes": "备注",
    # key loans
    "key": "钥匙",
    "quantity": "数量",
    "borrower": "借用人",
    "borrower_kind": "借用人类别",
    "signature": "签名",
    "approved_by": "批准人",
    "due_at": "归还期限",
    "count": "清点数量",
    "inspected_by": "检查人",
    "deadline": "整改期限",
    "units": "房号清单",
    "code": "预约码",
    "upload": "上传",
    "repaired_by": "维修人员",
    "place": "地点",
    "issue": "整改内容",
    # visitors
    "host_unit": "被访单元",
    "purpose": "来访事由",
    "plate": "车牌",
    "how": "确认方式",
    # alarms, duty log, handover
    "type": "类型",
    "location": "位置",
    "floor": "楼层",
    "room": "房号",
    "priority": "优先级",
    "to": "派往",
    "step": "处置步骤",
    "resolution": "处理结果",
    "minutes": "搁置分钟数",
    "cause": "事件原因",
    "responsible": "责任人",
    "remedial": "补救措施",
    "preventive": "预防措施",
    "results": "处理结果",
    "text": "内容",
    "category": "类别",
    "override_reason": "强制交班原因",
    # users and sync
    "role": "角色",
    "password": "密码",
    "push": "同步数据",
}

KIND_ZH: dict[str, str] = {
    "temporary": "临时出入证",
    "worker": "施工人员出入证",
    "resident": "住户卡",
    "staff": "员工卡",
}

# who borrows a key (edge.keys.BORROWERS)
BORROWER_ZH: dict[str, str] = {
    "owner": "业主",
    "sales": "销售人员",
    "staff": "管理处员工",
    "contractor": "施工方人员",
    "other": "其他人员",
}

# the other values a message lists as allowed (resolutions, categories, hazards...)
VALUE_ZH: dict[str, str] = {
    **STATUS_ZH,
    **ROLE_ZH,
    **KIND_ZH,
    "genuine_handled": "真实报警，已现场处理",
    "genuine_external": "真实报警，已由110/119/120接手",
    "false_device": "误报：设备故障",
    "false_user": "误报：人为误操作",
    "false_environment": "误报：环境因素",
    "test": "测试",
    "duplicate": "重复报警",
    "general": "一般",
    "patrol": "巡逻",
    "alarm": "报警",
    "complaint": "投诉",
    "repair": "报修",
    "visitor": "访客",
    "equipment": "设备",
    "handover": "交接班",
    "intercom": "对讲",
    "gate": "门岗",
    "flammable": "易燃",
    "explosive": "易爆",
    "toxic": "有毒",
    "corrosive": "腐蚀性",
    "in_person": "业主本人到场",
    "written": "书面授权委托书",
    "company": "公司证明",
    "phone": "电话",
    "grant": "通行",
    "deny": "禁止通行",
}

ALARM_ZH: dict[str, str] = {
    "fire": "火警",
    "smoke": "烟感报警",
    "intercom_emergency": "对讲紧急呼叫",
    "first_aid": "急救",
    "robbery": "抢劫",
    "intrusion": "入侵报警",
    "theft": "盗窃",
    "fight": "打架斗殴",
    "flood": "水浸",
}

# why a slip cannot be closed (edge.decision.Reason), said of the slip
SLIP_REASON_ZH: dict[str, str] = {
    "slip_used": "已经放行过，一张放行条只能用一次",
    "slip_rejected": "已被拒绝放行",
    "slip_cancelled": "已被管理处作废",
    "not_yet_valid": "还没到搬运时间",
    "expired": "已过搬运时间",
}

# what a pass import reports for a file it cannot open (OSError.strerror)
OS_ERROR_ZH: dict[str, str] = {
    "No such file or directory": "文件不存在",
    "Permission denied": "没有读取权限",
    "Is a directory": "这是文件夹，不是文件",
}


def _word(words: Mapping[str, str]) -> Callable[[str], str]:
    return lambda value: words.get(value, value)


def _choices(text: str) -> str:
    """``a, b, c`` (a list the message names) in Chinese, each word translated if known."""
    return "、".join(VALUE_ZH.get(w, w) for w in text.split(", "))


def _path_zh(parts: Sequence[str | int]) -> str:
    """A field's place, ``("items", 0, "qty")``, as 物品第 1 项的数量; unknown names stay."""
    out = ""
    for part in parts:
        if isinstance(part, int) or (part.isascii() and part.isdigit()):  # not "²"
            out += f"第 {int(part) + 1} 项"
        elif part.startswith("["):  # an index that is not a number: shown as it is
            out += part
        else:
            out += ("的" if out else "") + FIELD_ZH.get(part, part)
    return out


_INDEX = re.compile(r"\[(\w*)\]")


def field_zh(path: str) -> str:
    """A field as a message names it (``card``, ``items[0].hazard``) in Chinese."""
    parts: list[str | int] = []
    for name in path.split("."):
        head, *_ = name.split("[", 1)
        parts.append(head)
        for index in _INDEX.findall(name):
            parts.append(int(index) if index.isdigit() else f"[{index}]")
    return _path_zh(parts)


def _target(what: str) -> str:
    return "通行证" if what == "a pass" else f"放行条 {what}"


# a group's name, less trailing digits, picks how its text is carried into the template;
# a converter answering None makes its catalogue entry not apply
_CONVERTERS: dict[str, Callable[[str], str | None]] = {
    "field": field_zh,
    "problem": lambda text: zh(text),
    "what": lambda text: zh(text) or text,
    "status": _word(STATUS_ZH),
    "action": _word(ACTION_ZH),
    "role": _word(ROLE_ZH),
    "roles": _choices,
    "choices": _choices,
    "kind": _word(KIND_ZH),
    "borrower": _word(BORROWER_ZH),
    "hazard": _word(VALUE_ZH),
    "alarm_type": _word(ALARM_ZH),
    "slip_reason": _word(SLIP_REASON_ZH),
    "target": _target,
    "strerror": OS_ERROR_ZH.get,
}

# -- the catalogue ---------------------------------------------------------------------------
#
# In order: the first entry that matches (and whose converters all answer) wins, so a
# specific entry comes before a general one of the same shape. Entries that are only the
# problem part of "field: problem" are found through the "{field:path}: {problem}" entry
# near the end.

_CATALOGUE: tuple[tuple[str, str], ...] = (
    # passes
    ("no pass with id {pass_id!r}", "没有这张通行证：{pass_id}"),
    ("no pass {pass_id!r}", "没有这张通行证：{pass_id}"),
    ("no pass to confiscate for card {card}", "卡号 {card} 没有可没收的通行证"),
    ("no live pass for card {card}", "卡号 {card} 没有有效或待生效的通行证"),
    (
        "card {card} already has {kind} pass {pass_id}; revoke it, or replace it "
        "(--replace, or replace: true)",
        "卡号 {card} 已有一张{kind}（{pass_id}）；请先注销它，或选择替换",
    ),
    (
        "{shown} has passed; a new pass must end in the future",
        "{shown} 已经过去；新办的通行证有效期必须在以后结束",
    ),
    ("pass {pass_id} was confiscated already", "通行证 {pass_id} 已经被没收"),
    ("pass {pass_id} is already {status}", "通行证 {pass_id} 已经是{status}状态"),
    (
        "pass {pass_id} is {status}; issue a new one instead",
        "通行证 {pass_id} 已经是{status}状态，不能续期，请重新办理一张",
    ),
    ("pass {pass_id} has no photo on file", "通行证 {pass_id} 没有登记照片"),
    ("pass_id or card: one is required", "通行证编号或卡号：必须填写其中一项"),
    ("another pass import into this database is running", "另一个通行证导入正在进行，请稍后再试"),
    ("unknown pass kind {kind!r} (one of {choices})", "未知的证件类别 {kind}（可选：{choices}）"),
    ("valid_until must be after valid_from", "有效期至必须晚于生效时间"),
    (
        "a temporary pass is valid for at most 3 days (72 hours)",
        "临时出入证最长有效 3 天（72 小时）",
    ),
    ("a worker pass is valid for at most 3 months", "施工人员出入证最长有效 3 个月"),
    ("{what}: valid_until may be at most {shown}", "{what}：有效期至最晚为 {shown}"),
    ("{text!r} is not an ISO 8601 time", "{text} 不是有效的时间（应如 2026-05-01T08:00）"),
    (
        "{text!r} is outside the years {first} to {last}",
        "{text} 超出可接受的时间范围（{first} 年至 {last} 年）",
    ),
    ("must be within the years {first} to {last}", "必须在 {first} 年至 {last} 年之间"),
    (
        "a worker pass is tied to the unit being renovated",
        "施工人员出入证必须填写所装修的单位/房号",
    ),
    ("give the SHA-256 an upload of the photo answered", "请填写上传照片后返回的 SHA-256 值"),
    ("a confiscation needs its reason", "没收时必须填写"),
    # the card number and the ID number: what parse_card and the ID hasher refuse, always
    # said after "card: " or "id_number: ", so the field is not named again
    ("card number is empty", "未填写"),
    (
        "card number {card!r} is not a decimal card number (up to 10 digits)",
        "{card} 不是十进制卡号（最多 10 位数字）",
    ),
    ("card number {card!r} is larger than 32 bits", "{card} 超出范围（大于 32 位）"),
    (
        "unknown card format {fmt!r} (hex, dec or auto)",
        "未知的卡号格式 {fmt}（应为 hex、dec 或 auto）",
    ),
    (
        "card number {card!r} is neither hex nor a 10-digit decimal",
        "{card} 既不是十六进制卡号，也不是 10 位十进制卡号",
    ),
    (
        "card number {card!r} has {n} hex digits (8, 10 or 14 expected)",
        "{card} 有 {n} 位十六进制数字（应为 8、10 或 14 位）",
    ),
    ("id number must be 6 to 32 letters or digits", "必须是 6 到 32 位字母或数字"),
    # a daily window (the config's check, reported for a pass's daily_window)
    ("{value!r} is not a window like '07:00-19:00'", "{value} 不是时段格式（应如 07:00-19:00）"),
    ("{value!r}: minutes run from 00 to 59", "{value}：分钟应在 00 到 59 之间"),
    (
        "{value!r}: a window starts at 00:00-23:59 (24:00 is an end)",
        "{value}：开始时间应在 00:00 到 23:59 之间（24:00 只能作结束时间）",
    ),
    ("{value!r}: a window ends at 00:00-24:00", "{value}：结束时间应在 00:00 到 24:00 之间"),
    # patrol
    (
        "place and description: a fault notice says where and what",
        "故障通知单须填写地点和故障情况",
    ),
    ("upload the picture first (POST /api/v1/patrol/photos)", "请先上传照片"),
    ("no patrol round {round}", "没有这次巡查：{round}"),
    ("no fault notice {fault}", "没有这张故障通知单：{fault}"),
    ("fault notice {fault} was received by {name} already", "故障通知单 {fault} 已由 {name} 接收"),
    ("fault notice {fault} is closed already", "故障通知单 {fault} 已处理完毕"),
    (
        "fault notice {fault}: the duty officer has not received it",
        "故障通知单 {fault}：值班员尚未接收",
    ),
    ("name who repaired it", "请填写维修人员"),
    (
        "the wand's download has {n} bad lines; the first: {first}",
        "巡更棒数据有 {n} 行有误，整批未导入；第一处：{first}",
    ),
    # visitors announced in advance
    ("no announced visitor with code {code!r}", "没有预约码为 {code} 的预约访客"),
    ("the visit was {status}", "该预约{status}"),
    ("the visit's window has not started", "未到预约时段"),
    ("the visit's window has ended", "预约时段已过"),
    ("its {n} entries are used", "{n} 次入场已用完"),
    ("{unit!r} is not a unit of site {site}", "{unit} 不是小区 {site} 的房号"),
    ("after valid_from, and within 7 days of it", "须晚于开始时间，且不超过 7 天"),
    ("the window has ended already", "预约时段已结束"),
    ("no announced visitor {visit!r}", "没有这条预约：{visit}"),
    ("announced visitor {visit} is {status} already", "预约 {visit} 已经是{status}状态"),
    ("a host announces visitors for {unit} only", "住户只能为本户 {unit} 预约访客"),
    ("gate {gate} has no door contact in the config", "大门 {gate} 未配置门磁/道闸位置信号"),
    ("after now, and within 7 days", "须晚于现在，且不超过 7 天"),
    ("a gate's mode is changed with its reason", "改变大门状态须填写原因"),
    (
        "{unit} has {n} visitors announced already; at most {limit} at a time",
        "{unit} 已有 {n} 位预约访客，同时最多 {limit} 位",
    ),
    ("name the unit the visitor is for", "请填写被访单元"),
    # the estate's units
    (
        "{unit!r} is not a unit of this estate; ask the visitor to check, and if they insist, "
        "ask them politely to leave",
        "{unit} 不是本小区的房号；请访客核实，如坚持，请礼貌劝其离开",
    ),
    ("give at least one unit", "请至少填写一个房号"),
    ("{unit!r} is longer than {limit} characters", "{unit} 超过了 {limit} 个字符"),
    ("unit {unit!r} is not on site {site}'s list", "房号 {unit} 不在小区 {site} 的房号清单中"),
    # renovation permits
    (
        "unit and issue: a notice names the unit and what is to be put right",
        "整改通知单须填写房号和整改内容",
    ),
    ("this gate holds no permit {permit!r}", "本门岗没有装修许可证 {permit}"),
    ("no rectification notice {notice}", "没有这张整改通知单：{notice}"),
    ("rectification notice {notice} is closed already", "整改通知单 {notice} 已结案"),
    ("name who re-inspected the unit", "请填写复查人员"),
    ("deadline: must be after now", "整改期限须晚于现在"),
    ("unit and company: a permit names both", "许可证须填写房号和施工单位"),
    ("the permit's period ends before it starts", "许可证的结束时间早于开始时间"),
    ("permit {permit} exists already", "许可证 {permit} 已存在"),
    ("no permit {permit!r}", "没有这张装修许可证：{permit}"),
    (
        "permit {permit} is {status}: it cannot be {status2}",
        "许可证 {permit} 当前为{status}，不能改为{status2}",
    ),
    ("a stop-work order names its cause", "停工整顿须写明原因"),
    # key loans
    (
        "contractor and responsible: a contractor's key names both",
        "施工方的钥匙须同时填写施工单位和负责人",
    ),
    ("key {key} is in the cabinet already", "钥匙 {key} 已在钥匙柜登记"),
    ("no key {key!r} in the cabinet", "钥匙柜中没有钥匙 {key}"),
    (
        "borrower, phone and reason: all are required (the register asks)",
        "借用人、联系电话和借用原因均为必填（登记表要求）",
    ),
    (
        "upload the borrower's signature first (POST /api/v1/key-loans/signatures)",
        "请先上传借用人的签名",
    ),
    ("must be after now and within a year", "须晚于现在，且在一年以内"),
    ("no key loan {loan}", "没有这条钥匙借用记录：{loan}"),
    ("key loan {loan} is closed already", "钥匙借用记录 {loan} 已销项"),
    ("key loan {loan}: the keys are back already", "钥匙借用记录 {loan}：钥匙已归还"),
    ("key loan {loan}: the keys are not back yet", "钥匙借用记录 {loan}：钥匙尚未归还"),
    (
        "{count} counted of {lent} lent; report the missing ones lost "
        "(POST /api/v1/key-loans/{loan}/lost)",
        "清点 {count} 把，借出 {lent} 把；缺少的请登记为丢失",
    ),
    (
        "key loan {loan} is not a contractor's: it closed at its return",
        "钥匙借用记录 {loan} 不是施工方借用，归还时已销项",
    ),
    ("name who inspected the room", "请填写检查房屋的人员"),
    ("say what is to be put right", "请说明需要整改的内容"),
    ("{count} is not from 1 to the {lent} lent", "{count} 不在 1 到借出数量 {lent} 之间"),
    (
        "key {key} is retired (its lock was changed, or it is gone)",
        "钥匙 {key} 已停用（已换锁或已遗失）",
    ),
    (
        "key {key}: {asked} asked, {left} in the cabinet",
        "钥匙 {key}：要借 {asked} 把，柜中只有 {left} 把",
    ),
    (
        "key {key} is {contractor}'s: only its responsible person, {person}, may borrow it, "
        "in person",
        "钥匙 {key} 属于施工方 {contractor}：只能由其负责人 {person} 本人借用",
    ),
    (
        "a borrower of kind {borrower} needs a supervisor's approval (approved_by)",
        "{borrower}须经主管批准（填写批准人）",
    ),
    ("{name} is not a supervisor (admin) of this gate", "{name} 不是本门岗的主管（管理员）"),
    # camera pictures sent to the office
    ("the picture cannot be read ({error})", "无法读取这张抓拍照片（{error}）"),
    ("no picture worth showing fits in {limit} bytes", "照片缩小到 {limit} 字节以内已无法看清"),
    ("{sha!r} is not a picture's SHA-256", "{sha} 不是照片的 SHA-256 值"),
    ("{value} is not from 1 to {limit}", "{value} 不在 1 到 {limit} 之间"),
    (
        "say what to change (--snapshots, --snapshot-days)",
        "请说明要修改的内容（--snapshots 或 --snapshot-days）",
    ),
    (
        "site {site} does not take pictures of kind {kind} (its snapshots setting is {send})",
        "小区 {site} 不接收 {kind} 类的抓拍照片（当前设置为 {send}）",
    ),
    ("{fmt:token} is not a JPEG", "{fmt} 不是 JPEG 图片"),
    ("not a JPEG this office can read", "无法识别的图片（应为 JPEG）"),
    ("the bytes received are not picture {sha}", "收到的内容与照片 {sha} 不符"),
    (
        "no picture {sha} at the office (its site does not send it, or it was kept its days "
        "and deleted)",
        "总部没有照片 {sha}（该小区未设置上传，或已过保存期限被删除）",
    ),
    # photos
    ("photo {sha}: upload it first (POST /api/v1/photos)", "照片 {sha} 还没有上传，请先上传照片"),
    ("no photo {sha}", "没有这张照片：{sha}"),
    ("the upload is empty", "上传的内容为空"),
    (
        "{size:token} bytes is more than the {limit} allowed",
        "{size} 字节，超过了允许的 {limit} 字节",
    ),
    ("not a picture this service can read (JPEG or PNG)", "无法识别的图片（请上传 JPEG 或 PNG）"),
    ("the picture is damaged ({error})", "图片已损坏（{error}）"),
    ("{sha!r} is not a photo's SHA-256", "{sha} 不是照片的 SHA-256 值"),
    ("the bytes received are not photo {sha}", "收到的内容与照片 {sha} 不符"),
    (
        "{fmt:token} is not accepted; send a JPEG or PNG",
        "不接受 {fmt} 格式的图片，请上传 JPEG 或 PNG",
    ),
    ("{width:token}×{height:token} is too large a picture", "图片 {width}×{height} 太大"),
    (
        "{width:token}×{height:token} is too small to show a face",
        "图片 {width}×{height} 太小，看不清面部",
    ),
    (
        "the body is {size} bytes; at most {limit} are accepted",
        "上传内容为 {size} 字节，最多只接受 {limit} 字节",
    ),
    ("the body is more than the {limit} bytes accepted", "上传内容超过了允许的 {limit} 字节"),
    # the gate: checks, QR codes, snapshots, access events
    (
        "give exactly one of {field:word} or {field2:word}",
        "{field}和{field2}请填写其中一项（只填一项）",
    ),
    ("this code is for {target}, not {number}", "这个二维码属于{target}，不是放行条 {number}"),
    ("not a Gatehouse pass (GH1.…)", "不是本系统的通行证二维码（应以 GH1. 开头）"),
    ("the code is damaged", "已损坏，无法识别"),
    ("signed with a key this gate does not hold", "签名所用的密钥不是本门岗持有的密钥"),
    (
        "the signature does not match: a forged or altered pass",
        "签名不符：通行证可能是伪造或被改动过的",
    ),
    (
        "the key the code names is not the key that signed it",
        "注明的密钥与实际签名的密钥不符",
    ),
    (
        "this gate's clock is {behind} s behind the office's: set the gate's clock (timedatectl);"
        " no QR code is taken until then",
        "本门岗电脑的时钟比管理处慢 {behind} 秒：请先校准本机时间（timedatectl），"
        "校准前不接受任何二维码",
    ),
    (
        "only a temporary pass is taken by QR, not a {kind} pass",
        "只接受临时出入证，这是一张{kind}",
    ),
    ("the code does not say when the pass starts and ends", "没有写明通行证的起止时间"),
    (
        "a temporary pass is valid for at most {most} hours; this code says {said}",
        "临时出入证有效期最长 {most} 小时，此二维码写的是 {said} 小时",
    ),
    (
        "pass {pass_id} has had its {allowed} entries today at gate {gate}",
        "通行证 {pass_id} 今天在门岗 {gate} 已用满 {allowed} 次进入",
    ),
    (
        "office: no QR signing key in {path}: make one with `gatehouse office key init`, or"
        " restore the office backup that holds it (gatehouse restore FILE)",
        "管理处：{path} 中没有二维码签名密钥：请用 `gatehouse office key init` 生成，"
        "或用 gatehouse restore FILE 从含有密钥的管理处备份恢复",
    ),
    (
        "office: {path} is not an Ed25519 key (64 hex digits)",
        "管理处：{path} 不是 Ed25519 密钥（应为 64 位十六进制）",
    ),
    (
        "office: {path} exists already: the office has its signing key (`gatehouse office key`"
        " prints its public half)",
        "管理处：{path} 已存在，管理处已有签名密钥（`gatehouse office key` 可显示其公钥）",
    ),
    ("a manual opening needs its reason", "人工开闸时必须填写"),
    ("closing an alarm by force needs its reason", "强制关闭报警时必须填写"),
    ("{gate!r} has no camera", "{gate} 没有配置摄像机"),
    ("{gate!r} is not one of this node's gates", "{gate} 不是本机的门岗"),
    ("camera {camera} gave no picture in time", "摄像机 {camera} 未能及时返回画面"),
    ("no snapshot with id {snapshot_id}", "没有编号为 {snapshot_id} 的抓拍"),
    (
        "snapshot {snapshot_id} has no picture: the camera gave none",
        "抓拍 {snapshot_id} 没有图像：摄像机未返回画面",
    ),
    (
        "snapshot {snapshot_id} was removed by retention",
        "抓拍 {snapshot_id} 已超过保存期限，已被删除",
    ),
    ("no access event {event_id!r}", "没有这条通行记录：{event_id}"),
    # goods release slips
    ("no slip numbered {number!r}", "没有编号为 {number} 的放行条"),
    ("no slip {number!r}", "没有这张放行条：{number}"),
    ("slip {number} is {status} already", "放行条 {number} 已经是{status}状态"),
    (
        "slip {number} cannot be {action}: {slip_reason:word} (by {by})",
        "放行条 {number} 不能{action}：{slip_reason}（经办：{by}）",
    ),
    (
        "slip {number} cannot be {action}: {slip_reason:word}",
        "放行条 {number} 不能{action}：{slip_reason}",
    ),
    ("a rejection needs its reason", "拒绝放行时必须填写"),
    ("a company needs its seal or an authorised signer", "公司证明须有公司盖章或授权签字人"),
    ("at least one item is required", "至少要有一件"),
    (
        "a written authorisation (授权委托书) names the delegate, the moving time and the goods;"
        " a phone call is not enough",
        "书面授权委托书须写明受托人、搬运时间和物品，电话授权无效",
    ),
    ("must be the delegate the written authorisation names", "必须是书面授权委托书上写明的受托人"),
    ("needs a name and a quantity of at least 1", "须填写物品名称，数量至少为 1"),
    (
        "{name!r} is {hazard}; such goods are refused unless hazard_allowed is set by the approver",
        "「{name}」属于{hazard}物品，除非审批人允许危险品（hazard_allowed），否则不予放行",
    ),
    # visitors
    ("no visitor with id {visitor_id}", "没有编号为 {visitor_id} 的访客记录"),
    ("visitor {visitor_id} was admitted already", "访客 {visitor_id} 已经确认放行"),
    ("visitor {visitor_id} left already", "访客 {visitor_id} 已经离开"),
    (
        "{field:word} and {field2:word}: both are required (ask whom they visit first)",
        "{field}和{field2}：都必须填写（先问清访问谁）",
    ),
    # alarms
    ("no alarm with id {alarm_id}", "没有编号为 {alarm_id} 的报警"),
    ("alarm {alarm_id} is closed", "报警 {alarm_id} 已关闭"),
    ("alarm {alarm_id} is resolved", "报警 {alarm_id} 已处理完毕"),
    ("alarm {alarm_id} was acknowledged by {by} already", "报警 {alarm_id} 已由 {by} 确认过"),
    ("alarm {alarm_id} was resolved by {by} already", "报警 {alarm_id} 已由 {by} 处理完毕"),
    (
        "alarm {alarm_id} has no step {step} (its steps: {ids})",
        "报警 {alarm_id} 没有步骤 {step}（它的步骤：{ids}）",
    ),
    ("step {step} was ticked by {by} already", "步骤“{step}”已由 {by} 勾选过"),
    (
        "alarm {alarm_id} has its emergency record; only results may follow",
        "报警 {alarm_id} 已有紧急事件处理记录，之后只能补填处理结果",
    ),
    (
        "a {alarm_type:word} alarm may be shelved only by a supervisor (admin)",
        "「{alarm_type}」类报警只能由主管（管理员）搁置",
    ),
    ("whom was sent", "请填写派往的人员或单位"),
    ("shelving needs its reason", "搁置时必须填写"),
    (
        "must be in the future and no later than the end of this shift",
        "必须是将来的时间，且不能晚于本班结束",
    ),
    ("the emergency record needs it", "紧急事件处理记录表必须填写此项"),
    # duty log and handover
    (
        "cannot hand over with priority-1 alarms unacknowledged: {alarms}; acknowledge them,"
        " or a supervisor (admin) may override with override_reason",
        "还有未确认的一级报警，不能交班：{alarms}；请先确认这些报警，"
        "或由主管（管理员）填写强制交班原因（override_reason）",
    ),
    ("no handover with id {handover_id}", "没有编号为 {handover_id} 的交接班报告"),
    ("the outgoing officer ({by}) signs first", "须由交班人（{by}）先签字"),
    (
        "handover {handover_id} is signed by both shifts already",
        "交接班报告 {handover_id} 双方都已签字",
    ),
    (
        "the incoming officer must be someone other than the outgoing one",
        "接班人不能与交班人是同一人",
    ),
    ("{value!r} is not one of the configured shifts", "{value} 不是已设置的班次"),
    ("{value!r} is not a date", "{value} 不是有效的日期"),
    ("{value!r} is not YYYY-MM", "{value} 不是“年-月”格式（YYYY-MM）"),
    # users, logins and roles
    ("a user named {name!r} exists already", "用户 {name} 已存在"),
    ("no active user named {name!r}", "没有名为 {name} 的在用账号"),
    ("at least {n} characters", "至少 {n} 个字符"),
    (
        "role {role!r} may not do this ({roles})",
        "角色“{role}”无权进行此操作（允许的角色：{roles}）",
    ),
    ("only an admin may see personal data unmasked", "只有管理员可以查看未遮挡的个人信息"),
    (
        "too many bad tokens from this address; wait a minute",
        "此地址的错误令牌次数过多，请一分钟后再试",
    ),
    ("a valid bearer token (or a console login) is required", "请先登录（或提供有效的令牌）"),
    ("too many lookups by hand; wait a minute", "手工查询次数过多，请一分钟后再试"),
    ("a valid bearer token is required", "需要有效的令牌，或先登录"),
    ("log in to read the API's description", "登录后才能查看接口说明"),
    (
        "a valid bearer token (or a desk login) is required",
        "请先登录管理处页面（或提供有效的令牌）",
    ),
    ("a valid node token is required", "需要有效的门岗节点令牌"),
    (
        "this change needs the page's CSRF token",
        "此操作缺少页面的安全令牌（CSRF），请刷新页面后重试",
    ),
    # sync
    ("node {node_id!r} is registered already", "门岗节点 {node_id} 已经登记过"),
    ("no active node {node_id!r}", "没有在用的门岗节点 {node_id}"),
    (
        "{what}: {value!r} is not an id (letters, digits, _ . -; at most 64)",
        "{what}：{value} 不是有效的编号（只能用字母、数字、_ . -，最多 64 个）",
    ),
    ("site: a name is required", "小区：需要填写名称"),
    (
        "site {site_id}: name its gates (--gates north,south)",
        "小区 {site_id}：请列出它的各个门岗（--gates）",
    ),
    ("site {site_id!r} exists already", "小区 {site_id} 已存在"),
    ("site: name the estate, one of: {sites}", "请选择小区，可选：{sites}"),
    (
        "site: {site_id!r} is not a site of this office (one of: {sites})",
        "小区 {site_id} 不是本管理处的小区（可选：{sites}）",
    ),
    (
        "gates: {gates} not a gate of site {site_id} (its gates: {known})",
        "门岗 {gates} 不属于小区 {site_id}（该小区的门岗：{known}）",
    ),
    ("this needs the admin role", "此操作需要管理员权限"),
    ("this needs the clerk or admin role", "此操作需要客服或管理员权限"),
    ("this needs the clerk, admin or host role", "此操作需要客服、管理员或住户权限"),
    ("a host is the host of one unit: give it", "住户账号对应一个房号，请填写"),
    ("only a host has a unit", "只有住户账号才有房号"),
    (
        "only an office's host has a unit (--site, --unit)",
        "只有管理处的住户账号才有房号（--site、--unit）",
    ),
    (
        "{name!r} is a host: a host has the token only, no desk password",
        "{name} 是住户账号：住户只用令牌，不设前台密码",
    ),
    (
        "photo {sha}: not a photo of a pass this gate holds",
        "照片 {sha}：不是本门岗所持通行证的照片",
    ),
    (
        "qr: this code is for estate {meant}, not this gate's ({site})",
        "二维码：此码属于小区 {meant}，不是本门岗所在的小区（{site}）",
    ),
    ("month: {month!r} is not YYYY-MM", "月份 {month} 不是 YYYY-MM 格式"),
    ("seq {seq}: payload does not match its sha256", "第 {seq} 条同步记录：内容与其 SHA-256 不符"),
    ("not a batch of the sync protocol ({error})", "不是同步协议的数据批次（{error}）"),
    (
        "seq {seq}: before the epoch's first seq {base}",
        "第 {seq} 条同步记录：早于该纪元的第一条（第 {base} 条）",
    ),
    ("seq {seq}: twice in one batch", "第 {seq} 条同步记录：在同一批次中出现了两次"),
    (
        "seq {seq}: kind {record!r} is not a record the office knows",
        "第 {seq} 条同步记录：管理处不认识记录类别 {record}",
    ),
    ("seq {seq}: payload is nested too deeply", "第 {seq} 条同步记录：内容嵌套层数过多"),
    (
        "seq {seq}: payload is not JSON the office can keep ({error})",
        "第 {seq} 条同步记录：内容不是管理处能保存的 JSON（{error}）",
    ),
    ("seq {seq}: payload is not a JSON object", "第 {seq} 条同步记录：内容不是 JSON 对象"),
    (
        "seq {seq}: payload holds {char}, which the office cannot store",
        "第 {seq} 条同步记录：内容含有 {char}，管理处无法保存",
    ),
    (
        "seq {seq}: {record}.{name} must be a number",
        "第 {seq} 条同步记录：{record} 的 {name} 必须是数字",
    ),
    (
        "seq {seq}: {record}.{name} must be text",
        "第 {seq} 条同步记录：{record} 的 {name} 必须是文字",
    ),
    (
        "base {base}: this epoch began at seq {first} in earlier batches",
        "base {base}：此前的批次中该纪元从第 {first} 条开始",
    ),
    ("the office's database refused the batch: {error}", "管理处数据库拒收了此批次：{error}"),
    (
        "seq {seq}: the office's database refused it: {error}",
        "第 {seq} 条同步记录：管理处数据库拒收了这一条：{error}",
    ),
    # backup and restore
    ("{path} exists already; choose a new file", "{path} 已存在，请换一个文件名"),
    ("the copy failed its integrity check: {error}", "备份副本未通过完整性检查：{error}"),
    ("{path} failed its integrity check: {error}", "{path} 未通过完整性检查：{error}"),
    ("{path} is not a file", "{path} 不是文件"),
    ("{path} is not a Gatehouse database: {error}", "{path} 不是门岗系统的数据库：{error}"),
    (
        "{command} is not installed (Debian package postgresql-client)",
        "{command} 未安装（Debian 软件包 postgresql-client）",
    ),
    (
        "the service is running on {path}: stop it first (systemctl stop gatehouse-edge),"
        " then restore",
        "服务正在使用 {path}：请先停止服务（systemctl stop gatehouse-edge），再恢复",
    ),
    ("{path} is not a Gatehouse office backup", "{path} 不是本系统的管理处备份"),
    ("{path} holds no database dump", "{path} 中没有数据库备份"),
    ("its signing key is damaged", "其中的签名密钥已损坏"),
    ("{name} is not what a Gatehouse office backup holds", "{name} 不是管理处备份应有的内容"),
    (
        "{path} holds a different signing key ({held}) from the backup's ({kid}): nothing"
        " restored; to put the backup's in its place (the current one kept beside it), add"
        " --replace-key",
        "{path} 中已有另一把签名密钥（{held}），与备份中的（{kid}）不同：未恢复任何内容；"
        "如要换成备份中的密钥（现有密钥会另存一旁），请加 --replace-key",
    ),
    (
        "{path} is not a Gatehouse gate backup (no manifest)",
        "{path} 不是本系统的门岗备份（没有清单）",
    ),
    ("{name!r} is not in its manifest", "{name!r} 不在备份清单中"),
    ("{name} is damaged (its checksum differs)", "{name} 已损坏（校验和不符）"),
    ("{count} files missing, {name} first", "缺少 {count} 个文件，第一个是 {name}"),
    (
        "{path} holds a different ID-number key from the backup's: nothing restored; the"
        " restored records' ID numbers match only under the backup's key: add --replace-key"
        " to put it in place (the current one kept beside it)",
        "{path} 中已有另一把身份证号密钥，与备份中的不同：未恢复任何内容；恢复的记录只有用备份中的"
        "密钥才能比对身份证号：如要换成备份中的密钥（现有密钥会另存一旁），请加 --replace-key",
    ),
    ("the metrics are for this machine", "运行指标只供本机读取"),
    ("a valid bearer token is required for the metrics", "读取运行指标需要有效的令牌"),
    # answers that are not refusals of a rule
    ("the service could not complete this request", "系统暂时无法完成此请求，请稍后再试"),
    ("the office database is unavailable; try again", "管理处数据库暂时不可用，请稍后再试"),
    ("bad request", "请求有误"),
    ("Not Found", "未找到"),
    ("Method Not Allowed", "不支持此操作方式"),
    (
        "mosquitto_passwd is not installed (Debian package mosquitto)",
        "未安装 mosquitto_passwd（Debian 软件包 mosquitto）",
    ),
    ("mosquitto_passwd: {error}", "mosquitto_passwd 出错：{error}"),
    # the problem part of "field: problem"
    ("must not be empty", "不能为空"),
    (
        "{name!r} must be 1 to 64 letters, digits, '_', '.' or '-'",
        "{name!r} 须为 1 到 64 个字母、数字、'_'、'.' 或 '-'",
    ),
    ("the ACL has a login {name!r} already ({path})", "ACL 中已有登录名 {name!r}（{path}）"),
    ("required, one of {choices}", "必填，可选：{choices}"),
    ("must be one of {choices}", "必须是以下之一：{choices}"),
    (
        "{value!r} is not one of {choices} (office)",
        "{value} 不是管理处可用的角色（可选：{choices}）",
    ),
    ("{value!r} is not one of {choices}", "{value} 不在可选范围内（可选：{choices}）"),
    ("must be after {field:word}", "必须晚于{field}"),
    (
        "{value!r} is not a time in the years 2000 to 2099 (ISO 8601)",
        "{value} 不是 2000 年至 2099 年之间的有效时间（应如 2026-05-01T08:00）",
    ),
    ("must be a time in the years 2000 to 2099", "必须是 2000 年至 2099 年之间的时间"),
    (
        "{value!r} is not a month from 2000-01 to 2099-12 (YYYY-MM)",
        "{value} 不是 2000-01 至 2099-12 之间的月份（格式为 YYYY-MM）",
    ),
    # a file and a line of a pass import
    ("header lacks column {column!r}", "表头缺少列 {column}"),
    ("unknown column {column!r}", "未知的列 {column}"),
    ("{path}: {strerror}", "{path}：{strerror}"),
    ("line {line:token}: {problem}", "第 {line} 行：{problem}"),
    ("line {line:token}: {error}", "第 {line} 行无法读取：{error}"),
    ("{what} failed: {error}", "{what} 执行失败：{error}"),
    # "field: problem": the problem through the catalogue, the field through FIELD_ZH
    ("{field:path}: {problem}", "{field}：{problem}"),
    # and a file's: "/srv/import.csv: header lacks column 'kind'"
    ("{path}: {problem}", "{path}：{problem}"),
)

_SHAPES: dict[str, str] = {
    "": r".+?",
    "word": r"\w+",
    "token": r"\S+",
    "path": r"[A-Za-z_][\w.\[\]]*",  # card, items[0].hazard, authorisation_detail.seal
}
_SLOT = re.compile(r"\{(\w+)(!r)?(?::(\w+))?\}")


def _compile(source: str) -> re.Pattern[str]:
    """A catalogue entry's English as an anchored regex with a named group for each slot."""
    out, at = [], 0
    for slot in _SLOT.finditer(source):
        out.append(re.escape(source[at : slot.start()]))
        name, quoted, shape = slot.groups()
        if quoted:  # repr(): in single quotes, or in double ones when the text holds a '
            out.append(f"['\"](?P<{name}>.*?)['\"]")
        else:
            out.append(f"(?P<{name}>{_SHAPES[shape or '']})")
        at = slot.end()
    out.append(re.escape(source[at:]))
    return re.compile("^" + "".join(out) + "$", re.DOTALL)


RULES: list[tuple[re.Pattern[str], str]] = [(_compile(en), text) for en, text in _CATALOGUE]


def zh(detail: str) -> str | None:
    """The Chinese for an API refusal's English ``detail``, or None when no entry matches."""
    for pattern, template in RULES:
        found = pattern.match(detail)
        if found is None:
            continue
        values: dict[str, str] = {}
        for name, part in found.groupdict().items():
            convert = _CONVERTERS.get(name.rstrip("0123456789"))
            value = part if convert is None else convert(part)
            if value is None:
                break  # this entry cannot say it: try the next
            values[name] = value
        else:
            return template.format(**values)
    return None


# -- request validation (FastAPI's 422 on a malformed body or query) ----------------------------

_LOC_ROOTS = frozenset({"body", "query", "path", "header", "cookie"})
_OBJECT = "必须是一个对象（键值对）"
_VALIDATION_ZH: dict[str, str] = {
    "missing": "必填",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "最多 {max_length} 个字符",
    "string_pattern_mismatch": "格式不正确",
    "string_type": "必须是文字",
    "int_parsing": "必须是整数",
    "int_type": "必须是整数",
    "int_from_float": "必须是整数",
    "float_parsing": "必须是数字",
    "float_type": "必须是数字",
    "greater_than_equal": "不能小于 {ge}",
    "less_than_equal": "不能大于 {le}",
    "greater_than": "必须大于 {gt}",
    "less_than": "必须小于 {lt}",
    "literal_error": "必须是以下之一：{expected}",
    "enum": "必须是以下之一：{expected}",
    "json_invalid": "请求内容不是有效的 JSON",
    "json_type": "请求内容不是有效的 JSON",
    "model_attributes_type": _OBJECT,
    "model_type": _OBJECT,
    "dict_type": _OBJECT,
    "extra_forbidden": "不接受此字段",
    "bool_parsing": "必须是 true 或 false",
    "bool_type": "必须是 true 或 false",
    "list_type": "必须是列表",
    "too_long": "最多 {max_length} 项",
    "too_short": "至少 {min_length} 项",
}
_QUOTED = re.compile(r"'([^']*)'")


def _expected(text: str) -> str:
    """pydantic's ``'a', 'b' or 'c'`` as 甲、乙、丙."""
    words = _QUOTED.findall(text)
    return "、".join(VALUE_ZH.get(w, w) for w in words) if words else text


def _problem_zh(error: Mapping[str, Any]) -> str:
    kind, msg = error.get("type", ""), str(error.get("msg", ""))
    if kind in ("value_error", "assertion_error"):
        said = re.sub(r"^(Value|Assertion) error, ", "", msg)
        return zh(said) or said
    template = _VALIDATION_ZH.get(kind)
    if template is None:
        return msg  # a kind not listed: pydantic's English
    ctx = {k: str(v) for k, v in (error.get("ctx") or {}).items()}
    if "expected" in ctx:
        ctx["expected"] = _expected(ctx["expected"])
    try:
        return template.format(**ctx)
    except (KeyError, IndexError):
        return msg


def validation_zh(errors: Sequence[Mapping[str, Any]]) -> str:
    """pydantic's ``errors()`` as one Chinese line: 卡号：至少 1 个字符；姓名：必填."""
    lines = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if loc and loc[0] in _LOC_ROOTS:
            loc = loc[1:]
        if error.get("type") in ("json_invalid", "json_type"):
            loc = []  # the place is a position in the text, not a field
        problem = _problem_zh(error)
        lines.append(f"{_path_zh(loc)}：{problem}" if loc else problem)
    return "；".join(lines) or "请求有误"


def refusal(detail: Any, errors: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """An error answer's body: ``detail`` as the API says it, and ``detail_zh`` where there
    is Chinese for it (``errors``: pydantic's, for a malformed request)."""
    body: dict[str, Any] = {"detail": detail}
    try:
        if errors:
            chinese: str | None = validation_zh(errors)
        else:
            chinese = zh(detail) if isinstance(detail, str) else None
    except Exception:  # a request's odd field name must never turn its 422 into a 503
        log.exception("no Chinese for %r", detail)
        chinese = None
    if chinese:
        body["detail_zh"] = chinese
    return body
