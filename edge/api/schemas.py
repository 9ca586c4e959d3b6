"""Request bodies: validated here, so a bad request is a 422 naming the field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Text = Field(min_length=1, max_length=200)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PassIn(Body):
    kind: Literal["temporary", "worker", "resident", "staff"]
    card: str = Field(min_length=1, max_length=40)
    name: str = Text
    unit: str | None = Field(None, max_length=50)
    id_number: str | None = Field(None, max_length=40)
    valid_from: str | None = Field(None, max_length=40, description="ISO 8601")
    valid_until: str | None = Field(None, max_length=40, description="ISO 8601")
    gates: list[str] | None = Field(None, max_length=50)
    daily_window: str | None = Field(None, max_length=20, description="HH:MM-HH:MM")
    permit_no: str | None = Field(None, max_length=50)
    photo: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="what POST /api/v1/photos answered"
    )
    replace: bool = Field(
        False, description="revoke the card's live pass of this kind (else 409 naming it)"
    )


class RevokeCardIn(Body):
    card: str = Field(min_length=1, max_length=40)
    reason: str | None = Field(None, max_length=500)


class RenewIn(Body):
    valid_until: str | None = Field(
        None, max_length=40, description="ISO 8601; default: the longest the kind allows"
    )


class ReasonIn(Body):
    reason: str | None = Field(None, max_length=500)


class IdLookupIn(Body):
    id_number: str = Field(min_length=6, max_length=40, description="as on the ID card")


class CheckIn(Body):
    card: str | None = Field(None, min_length=1, max_length=40)
    qr: str | None = Field(None, min_length=1, max_length=2000)
    gate: str | None = Field(None, max_length=64)
    at: str | None = Field(None, max_length=40, description="ISO 8601; default now")

    @model_validator(mode="after")
    def one_credential(self) -> CheckIn:
        if (self.card is None) == (self.qr is None):
            raise ValueError("give exactly one of card or qr")
        return self


class OverrideIn(Body):
    gate: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)
    card: str | None = Field(None, max_length=40)
    name: str | None = Field(None, max_length=200)


class GateModeIn(Body):
    mode: Literal["normal", "held_open", "locked"]
    reason: str = Field(min_length=1, max_length=500)
    until: str | None = Field(None, max_length=40, description="ISO 8601; none: until cancelled")


class ConfiscationIn(Body):
    pass_id: str | None = Field(None, min_length=1, max_length=64)
    card: str | None = Field(None, min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=500)
    gate: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def one_target(self) -> ConfiscationIn:
        if (self.pass_id is None) == (self.card is None):
            raise ValueError("give exactly one of pass_id or card")
        return self


class ItemIn(Body):
    name: str = Text
    qty: int = Field(ge=1, le=100_000)
    hazard: Literal["flammable", "explosive", "toxic", "corrosive"] | None = None


class AuthorisationDetail(Body):
    delegate: str | None = Field(None, max_length=200)
    moving_time: str | None = Field(None, max_length=100)
    goods_list: str | None = Field(None, max_length=2000)
    seal: str | None = Field(None, max_length=200)
    signer: str | None = Field(None, max_length=200)


class SlipIn(Body):
    unit: str = Field(min_length=1, max_length=50)
    owner: str = Text
    bearer: str = Text
    authorisation: Literal["in_person", "written", "company"]
    authorisation_detail: AuthorisationDetail | None = None
    items: list[ItemIn] = Field(min_length=1, max_length=200)
    valid_from: str | None = Field(None, max_length=40)
    valid_until: str | None = Field(None, max_length=40)
    approver: str | None = Field(None, max_length=200)
    hazard_allowed: bool = False


class ReleaseIn(Body):
    gate: str | None = Field(None, max_length=64)
    notes: str | None = Field(None, max_length=2000, description="discrepancies found")
    qr: str | None = Field(None, max_length=4000, description="the slip's office-signed QR")


class RejectIn(Body):
    reason: str = Field(min_length=1, max_length=2000)
    gate: str | None = Field(None, max_length=64)


class CancelIn(Body):
    reason: str = Field(min_length=1, max_length=2000)


class VisitorIn(Body):
    name: str = Text
    host_unit: str = Field(min_length=1, max_length=50)
    id_number: str | None = Field(None, max_length=40)
    purpose: str | None = Field(None, max_length=500)
    plate: str | None = Field(None, max_length=20)
    card: str | None = Field(None, max_length=40)
    gate: str | None = Field(None, max_length=64)


class ArriveIn(Body):
    code: str = Field(pattern=r"^\s*\d{8}\s*$", description="the code the office gave")
    gate: str | None = Field(None, max_length=64)


class ConfirmIn(Body):
    how: Literal["intercom", "phone", "in_person"]


class AlarmIn(Body):
    """A help request (求助) or an alarm entered by the officer."""

    type: str = Field(pattern=r"^[a-z_]{2,40}$")
    location: str | None = Field(None, max_length=200)
    floor: str | None = Field(None, max_length=20)
    room: str | None = Field(None, max_length=40)
    gate: str | None = Field(None, max_length=64)
    notes: str | None = Field(None, max_length=2000)
    priority: int | None = Field(None, ge=1, le=3)


class ResolveIn(Body):
    resolution: str | None = Field(None, max_length=40)
    notes: str | None = Field(None, max_length=2000)


class DispatchIn(Body):
    to: str = Field(min_length=1, max_length=200)


class ShelveIn(Body):
    minutes: int = Field(ge=1, le=24 * 60)
    reason: str = Field(min_length=1, max_length=500)


class EmergencyIn(Body):
    cause: str | None = Field(None, max_length=4000)
    responsible: str | None = Field(None, max_length=200)
    remedial: str | None = Field(None, max_length=4000)
    preventive: str | None = Field(None, max_length=4000)
    results: str | None = Field(None, max_length=4000)


class DutyLogIn(Body):
    text: str = Field(min_length=1, max_length=4000)
    category: str = Field("general", max_length=20)


class HandoverIn(Body):
    items: dict[str, int] = Field(default_factory=dict, max_length=100)
    notes: str | None = Field(None, max_length=4000)
    override_reason: str | None = Field(None, max_length=1000)


class SnapshotIn(Body):
    gate: str = Field(min_length=1, max_length=64)


class KeyIn(Body):
    id: str = Field(min_length=1, max_length=40, pattern=r"^[^\s/]+$",
                    description="the code written on the key (钥匙单位编码)")  # fmt: skip
    label: str = Text
    kind: Literal["unit", "public", "item"]
    unit: str | None = Field(None, max_length=50)
    quantity: int = Field(1, ge=1, le=100)
    contractor: str | None = Field(None, max_length=200)
    responsible: str | None = Field(None, max_length=100, description="the contractor's person")


class KeyLoanIn(Body):
    key: str = Field(min_length=1, max_length=40)
    quantity: int = Field(1, ge=1, le=100)
    borrower: str = Field(min_length=1, max_length=100)
    borrower_kind: Literal["owner", "sales", "staff", "contractor", "other"]
    company: str | None = Field(None, max_length=200)
    phone: str = Field(min_length=3, max_length=30)
    reason: str = Field(min_length=1, max_length=500)
    signature: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="what POST /api/v1/key-loans/signatures answered"
    )
    approved_by: str | None = Field(None, max_length=100, description="a supervisor (admin)")
    due_at: str | None = Field(None, max_length=40, description="ISO 8601; default 3 days")
    notes: str | None = Field(None, max_length=500)


class KeyReturnIn(Body):
    count: int = Field(ge=0, le=100, description="how many were counted back")
    notes: str | None = Field(None, max_length=500)


class KeyInspectionIn(Body):
    ok: bool
    inspected_by: str = Field(min_length=1, max_length=100)
    notes: str | None = Field(None, max_length=500)


class KeyLostIn(Body):
    count: int = Field(ge=1, le=100, description="how many are lost")
    notes: str | None = Field(None, max_length=500)


class NoticeIn(Body):
    unit: str = Field(min_length=1, max_length=50)
    permit_no: str | None = Field(None, max_length=64)
    issue: str = Field(min_length=1, max_length=2000, description="what is to be put right")
    deadline: str = Field(min_length=1, max_length=40, description="ISO 8601")


class NoticeCloseIn(Body):
    inspected_by: str = Field(min_length=1, max_length=100)
    notes: str | None = Field(None, max_length=2000)


class PatrolTagIn(Body):
    tag: str = Field(pattern=r"^[0-9A-Za-z._:-]{1,64}$")
    at: float | None = Field(None, ge=946684800, le=4102444800, description="UNIX seconds")


class PatrolReadsIn(Body):
    reads: list[PatrolTagIn] = Field(min_length=1, max_length=10000)
    device: str | None = Field(None, max_length=64)


class FaultIn(Body):
    place: str = Field(min_length=1, max_length=200, description="a checkpoint or a place")
    category: str = Field(min_length=1, max_length=40)
    description: str = Field(min_length=1, max_length=2000)
    photo: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    round_id: int | None = Field(None, ge=1, le=2**62)


class FaultCloseIn(Body):
    repaired_by: str = Field(min_length=1, max_length=100)
    notes: str | None = Field(None, max_length=2000)
