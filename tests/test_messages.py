"""The Chinese catalogue of API refusals (edge.messages): every message a raise site in edge/
and sync/ writes has its Chinese, and a few translations said exactly."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

import pytest
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.api.schemas import PassIn
from edge.messages import validation_zh, zh

ROOT = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u3400-\u9fff]")

# Messages built some other way than a literal or an f-string (a variable, ``str(e)``) cannot
# be checked here. Today: edge/pass_ops.py ``PassError(str(e))``, a daily window's ConfigError
# passed on (its words are tested below); edge/keys.py ``Conflict(why)``, the register's pure
# refusal (each one's Chinese is checked in tests/test_keys.py). A new one should be an
# f-string instead.
SKIPPED_AT_MOST = 2

# f"card: {e}" passes on what the callee raised: the messages of these files stand in for e
PASSED_ON = {"card": "edge/cards.py", "id_number": "edge/privacy.py"}
# an OSError's strerror, as a file that does not exist says it
STANDINS = {"strerror": "No such file or directory"}


@dataclass(frozen=True)
class Site:
    where: str
    message: ast.expr | None
    caught: frozenset[str]  # names bound by the except clauses around the raise


def _sources() -> list[Path]:
    return sorted(p for d in ("edge", "sync") for p in (ROOT / d).rglob("*.py"))


def _trees() -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p)) for p in _sources()}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _refusals(trees: dict[str, ast.Module]) -> set[str]:
    """DomainError and its subclasses, wherever they are declared; and HTTPException."""
    found = {"DomainError"}
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ClassDef)
                    and node.name not in found
                    and any(_name(b) in found for b in node.bases)
                ):
                    found.add(node.name)
                    grew = True
    return found | {"HTTPException"}


def _raises(node: ast.AST, caught: frozenset[str]) -> Iterator[tuple[ast.Raise, frozenset[str]]]:
    if isinstance(node, ast.Raise):
        yield node, caught
    for child in ast.iter_child_nodes(node):
        inner = caught
        if isinstance(child, ast.ExceptHandler) and child.name:
            inner = caught | {child.name}
        yield from _raises(child, inner)


def _sites(trees: dict[str, ast.Module], classes: set[str]) -> list[Site]:
    sites = []
    for path, tree in trees.items():
        for node, caught in _raises(tree, frozenset()):
            call = node.exc
            if not isinstance(call, ast.Call) or _name(call.func) not in classes:
                continue
            args = {k.arg: k.value for k in call.keywords}
            if _name(call.func) == "HTTPException":
                message = call.args[1] if len(call.args) > 1 else args.get("detail")
            else:
                message = call.args[0] if call.args else None
            sites.append(Site(f"{path}:{node.lineno}", message, caught))
    return sites


def _standin(value: ast.FormattedValue) -> str:
    name = _name(value.value)
    if name in STANDINS:
        return STANDINS[name]
    return "'x1'" if value.conversion == ord("r") else "x1"


def _sample(message: ast.JoinedStr) -> str:
    return "".join(
        _standin(v) if isinstance(v, ast.FormattedValue) else str(ast.literal_eval(v))
        for v in message.values
    )


def _literal(message: ast.expr | None) -> bool:
    return isinstance(message, ast.JoinedStr) or (
        isinstance(message, ast.Constant) and isinstance(message.value, str)
    )


def _value_errors(path: str) -> list[str]:
    """The messages of ``raise ValueError(...)`` in one file, as samples."""
    tree = ast.parse((ROOT / path).read_text())
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and _name(node.exc.func) == "ValueError"
            and node.exc.args
            and _literal(node.exc.args[0])
        ):
            found += _samples(Site(path, node.exc.args[0], frozenset()))
    assert found, f"{path} raises no ValueError with a message any more"
    return found


def _samples(site: Site) -> list[str]:
    """What a site's message may read: placeholders stand in as x1 ('x1' for !r); a field's
    message passed on from the callee (f"card: {e}") as each message the callee raises."""
    message = site.message
    if isinstance(message, ast.Constant):
        return [message.value]
    assert isinstance(message, ast.JoinedStr)
    match message.values:
        case [ast.Constant(value=str(prefix)), ast.FormattedValue(value=ast.Name(id=e))] if (
            e in site.caught and prefix.removesuffix(": ") in PASSED_ON
        ):
            return [prefix + m for m in _value_errors(PASSED_ON[prefix.removesuffix(": ")])]
    return [_sample(message)]


def _all_sites() -> list[Site]:
    trees = _trees()
    return _sites(trees, _refusals(trees))


def test_every_raise_site_has_its_chinese() -> None:
    sites = _all_sites()
    checked = [s for s in sites if _literal(s.message)]
    skipped = [s.where for s in sites if not _literal(s.message)]
    assert len(checked) > 100, f"only {len(checked)} raise sites found: is the walk broken?"
    missing = [
        f"{site.where}: {sample!r} -> {zh(sample)!r}"
        for site in checked
        for sample in _samples(site)
        if not CJK.search(zh(sample) or "")
    ]
    assert not missing, (
        f"{len(missing)} messages have no Chinese in edge/messages.py:\n" + "\n".join(missing)
    )
    assert len(skipped) <= SKIPPED_AT_MOST, (
        "raise sites whose message is neither a literal nor an f-string, so it cannot be "
        "checked (write it as an f-string, and add its Chinese):\n" + "\n".join(skipped)
    )


def test_the_walk_sees_what_the_catalogue_must_cover() -> None:
    samples = {x for s in _all_sites() if _literal(s.message) for x in _samples(s)}
    assert "no pass with id 'x1'" in samples  # NotFound, an f-string with !r
    assert "pass_id or card: one is required" in samples  # PassError, a literal
    assert "card: card number is empty" in samples  # a message passed on from parse_card
    assert "this change needs the page's CSRF token" in samples  # HTTPException


@pytest.mark.parametrize(
    ("detail", "chinese"),
    [
        ("no pass 'x'", "没有这张通行证：x"),
        ("no pass with id 'P-7Q2'", "没有这张通行证：P-7Q2"),
        ("pass P-7Q2 is already revoked", "通行证 P-7Q2 已经是已注销状态"),
        ("pass P-7Q2 is already confiscated", "通行证 P-7Q2 已经是已没收状态"),
        ("name: must not be empty", "姓名：不能为空"),
        ("valid_until: must be after valid_from", "有效期至：必须晚于生效时间"),
        (
            "kind: 'tmp' is not one of temporary, worker, resident, staff",
            "证件类别：tmp 不在可选范围内（可选：临时出入证、施工人员出入证、住户卡、员工卡）",
        ),
        (
            "card: card number '12ab' has 4 hex digits (8, 10 or 14 expected)",
            "卡号：12ab 有 4 位十六进制数字（应为 8、10 或 14 位）",
        ),
        (
            "role 'guard' may not do this (control, admin)",
            "角色“门岗保安”无权进行此操作（允许的角色：监控中心值班员、管理员）",
        ),
        (
            "slip FX-2026-00012 cannot be released: slip_used (by 王五)",
            "放行条 FX-2026-00012 不能放行：已经放行过，一张放行条只能用一次（经办：王五）",
        ),
        ("slip FX-2026-00012 is cancelled already", "放行条 FX-2026-00012 已经是已作废状态"),
        (
            "items[1].hazard: must be one of flammable, explosive",
            "物品第 2 项的危险品类别：必须是以下之一：易燃、易爆",
        ),
        ("alarm 41 was acknowledged by 李四 already", "报警 41 已由 李四 确认过"),
        ("a user named 'zhang' exists already", "用户 zhang 已存在"),
        (
            "daily_window: '7:60-19:00': minutes run from 00 to 59",
            "每日通行时段：7:60-19:00：分钟应在 00 到 59 之间",
        ),
        (
            "daily_window: '7-19' is not a window like '07:00-19:00'",
            "每日通行时段：7-19 不是时段格式（应如 07:00-19:00）",
        ),
        (
            "line 12: id_number: id number must be 6 to 32 letters or digits",
            "第 12 行：证件号：必须是 6 到 32 位字母或数字",
        ),
        ("photo: /srv/p.jpg: No such file or directory", "照片：/srv/p.jpg：文件不存在"),
    ],
)
def test_translations(detail: str, chinese: str) -> None:
    assert zh(detail) == chinese


def test_unknown_words_in_a_known_message_stay_as_they_are() -> None:
    assert zh("pass P-1 is already frozen") == "通行证 P-1 已经是frozen状态"
    assert zh("colour: must not be empty") == "colour：不能为空"
    assert zh("role 'janitor' may not do this (guard)") == (
        "角色“janitor”无权进行此操作（允许的角色：门岗保安）"
    )


def test_what_nobody_wrote_has_no_chinese() -> None:
    assert zh("something nobody wrote") is None
    assert zh("") is None
    # the field is known, the problem is not: no half translation
    assert zh("card: the reader caught fire") is None


class Colour(Enum):
    RED = "red"
    GREEN = "green"


class Item(BaseModel):
    qty: int = Field(ge=1, le=10)


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card: str = Field(min_length=1, max_length=4)
    name: str
    unit: str = Field(max_length=3)
    photo: str = Field(pattern=r"^[0-9a-f]+$")
    priority: int = Field(gt=0, lt=4)
    limit: int
    minutes: float
    hazard_allowed: bool
    kind: Literal["temporary", "worker"]
    colour: Colour
    gates: list[str] = Field(min_length=1)
    items: list[Item]
    goods_list: list[str] = Field(max_length=1)
    authorisation_detail: dict[str, str]
    step: int = Field(le=5)
    qty: int = Field(ge=1)


class OneOf(BaseModel):
    card: str | None = None
    qr: str | None = None

    @model_validator(mode="after")
    def one(self) -> OneOf:
        if (self.card is None) == (self.qr is None):
            raise ValueError("give exactly one of card or qr")
        return self


def _errors(model: type[BaseModel], data: object) -> list:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return caught.value.errors()  # type: ignore[return-value]


def test_validation_errors_in_chinese() -> None:
    errors = _errors(
        Probe,
        {
            "card": "",
            "unit": "1-2-301",
            "photo": "XYZ",
            "priority": 0,
            "limit": "ten",
            "minutes": "soon",
            "hazard_allowed": "perhaps",
            "kind": "tmp",
            "colour": "blue",
            "gates": "north",
            "items": [{"qty": 1}, {"qty": 11}],
            "goods_list": ["sofa", "bed"],
            "authorisation_detail": ["seal"],
            "step": 6,
            "qty": 0,
            "nickname": "x",
        },
    )
    kinds = {e["type"] for e in errors}
    assert kinds >= {
        "missing", "string_too_short", "string_too_long", "string_pattern_mismatch",
        "greater_than", "int_parsing", "float_parsing", "bool_parsing", "literal_error", "enum",
        "list_type", "too_long", "less_than_equal", "dict_type", "greater_than_equal",
        "extra_forbidden",
    }  # fmt: skip
    line = validation_zh(errors)
    for part in (
        "卡号：至少 1 个字符",
        "姓名：必填",
        "单位/房号：最多 3 个字符",
        "照片：格式不正确",
        "优先级：必须大于 0",
        "条数：必须是整数",
        "搁置分钟数：必须是数字",
        "允许危险品：必须是 true 或 false",
        "证件类别：必须是以下之一：临时出入证、施工人员出入证",
        "colour：必须是以下之一：red、green",
        "可通行门岗：必须是列表",
        "物品清单：最多 1 项",
        "物品第 2 项的数量：不能大于 10",
        "授权信息：必须是一个对象（键值对）",
        "处置步骤：不能大于 5",
        "数量：不能小于 1",
        "nickname：不接受此字段",
    ):
        assert part in line.split("；"), f"{part!r} not in {line!r}"
    assert not re.search(r"[Ii]nput should|Field required|String should", line)

    too_short = _errors(Probe, {"gates": []})
    assert "可通行门岗：至少 1 项" in validation_zh(too_short)
    lesser = [e for e in _errors(Probe, {"priority": 4}) if e["loc"] == ("priority",)]
    assert validation_zh(lesser) == "优先级：必须小于 4"


def test_a_validators_own_words_go_through_the_catalogue() -> None:
    errors = _errors(OneOf, {})
    assert errors[0]["type"] == "value_error"
    assert validation_zh(errors) == "卡号和二维码请填写其中一项（只填一项）"


def test_the_pass_forms_errors_as_the_api_reports_them() -> None:
    """PassIn behind FastAPI: "body" and "query" are not named, a bad JSON has no field."""
    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def _bad(_r: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail_zh": validation_zh(exc.errors())}, 422)

    @app.post("/passes")
    def _issue(body: PassIn, limit: int = Query(1, ge=1)) -> dict[str, str]:
        return {}

    client = TestClient(app)
    said = client.post("/passes?limit=x", json={"kind": "tmp", "card": ""}).json()["detail_zh"]
    for part in (
        "条数：必须是整数",
        "证件类别：必须是以下之一：临时出入证、施工人员出入证、住户卡、员工卡",
        "卡号：至少 1 个字符",
        "姓名：必填",
    ):
        assert part in said.split("；")
    bad_json = client.post(
        "/passes", content=b'{"kind":', headers={"content-type": "application/json"}
    )
    assert bad_json.json()["detail_zh"] == "请求内容不是有效的 JSON"
    not_an_object = client.post("/passes", json=["temporary"]).json()["detail_zh"]
    assert not_an_object == "必须是一个对象（键值对）"

    errors = _errors(PassIn, {"kind": "worker", "card": "1", "name": "x", "photo": "zz"})
    assert validation_zh(errors) == "照片：格式不正确"


def test_a_field_named_like_a_number_that_is_not_one_is_named_as_it_is():
    """The fuzzer sent ``{"²": null}``: "²" is a digit to str.isdigit, not to int()."""
    said = validation_zh([{"type": "extra_forbidden", "loc": ("body", "²"), "msg": "x"}])
    assert "²" in said
