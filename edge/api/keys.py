"""钥匙借用 Key loans: the cabinet, lending against a signature, return, inspection, loss."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from edge import keys
from edge.api.deps import CURSOR, UNMASK, Caller, keep_picture, page, roles, service, unmasked
from edge.api.schemas import KeyIn, KeyInspectionIn, KeyLoanIn, KeyLostIn, KeyReturnIn
from edge.errors import DomainError
from edge.passes import PassError, parse_time
from edge.photos import MAX_UPLOAD
from edge.views import key_loan_view, key_view

router = APIRouter(tags=["keys"])
LoanId = Annotated[int, Path(ge=1, le=2**62)]


def _view(svc: Any, loan: dict[str, Any], unmask: bool = False) -> dict[str, Any]:
    return key_loan_view(loan, svc.cfg.tz, unmask, svc.cfg.rules.name_mask, svc.clock.now())


@router.get("/api/v1/keys")
def cabinet(request: Request, who: Caller = roles("guard", "control")) -> dict[str, Any]:
    """Every key in the cabinet, with how many of it are there now (``in_cabinet``)."""
    svc = service(request)
    return {"items": [key_view(k, svc.cfg.tz) for k in svc.read(keys.keys)], "next": None}


@router.post("/api/v1/keys", status_code=201)
def add_key(request: Request, body: KeyIn, who: Caller = roles("admin")) -> dict[str, Any]:
    """A key (or a bunch, or an item lent like one) put in the cabinet's register."""
    svc = service(request)
    fields = body.model_dump()
    key = svc.write(lambda c: keys.add_key(c, fields, who.name, svc.clock.now()))
    return key_view(key | {"in_cabinet": key["quantity"]}, svc.cfg.tz)


@router.post("/api/v1/key-loans/signatures", status_code=201, max_body_size=MAX_UPLOAD)
async def signature(request: Request, who: Caller = roles("guard")) -> dict[str, Any]:
    """The borrower's signature as a picture (drawn on the guard's screen, or the paper
    register photographed): JPEG or PNG, kept like a photo; ``signature`` names it."""
    return {"signature": await keep_picture(request, who, "signature")}


@router.post("/api/v1/key-loans", status_code=201)
def lend(request: Request, body: KeyLoanIn, who: Caller = roles("guard")) -> dict[str, Any]:
    """A key lent: the register's line, signed. Refused (409) when the rules of the
    register say no: a contractor's key to anyone but its responsible person, a borrower
    who is neither owner, sales nor staff without a supervisor's approval, more keys than
    the cabinet holds."""
    svc = service(request)
    try:
        due = parse_time(body.due_at, svc.cfg.tz) if body.due_at else None
    except PassError:
        raise DomainError(f"due_at: {body.due_at!r} is not an ISO 8601 time") from None
    req = keys.LoanRequest(
        key_id=body.key, borrower=body.borrower, borrower_kind=body.borrower_kind,
        phone=body.phone, reason=body.reason, signature=body.signature,
        quantity=body.quantity, company=body.company, approved_by=body.approved_by,
        due_at=due, notes=body.notes,
    )  # fmt: skip
    loan = svc.write(lambda c: keys.lend(c, svc.cfg, svc.epoch, req, svc.photos.has, who.name,
                                         svc.clock.now()))  # fmt: skip
    return _view(svc, loan)


@router.get("/api/v1/key-loans")
def loans(
    request: Request,
    who: Caller = roles("guard", "control"),
    open_only: bool = Query(False, alias="open", description="true: only loans not closed"),
    key: str | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=500),
    cursor: int | None = CURSOR,
    unmask: bool = UNMASK,
) -> dict[str, Any]:
    """The register, newest first; borrowers' names and phones masked unless an admin asks
    (audited)."""
    svc = service(request)
    found = svc.read(lambda c: keys.listing(c, open_only, key, limit + 1, cursor))
    whole = unmasked(svc, who, unmask, "key-loans", len(found))
    shown, after = page(found, limit)
    return {"items": [_view(svc, loan, whole) for loan in shown], "next": after}


@router.get("/api/v1/key-loans/{loan_id}")
def loan(request: Request, loan_id: LoanId, who: Caller = roles("guard", "control")) -> dict:
    svc = service(request)
    return _view(svc, svc.read(lambda c: keys.get(c, loan_id)))


def _with_alarms(svc: Any, fn: Any) -> dict[str, Any]:
    """Run ``fn(conn) -> (loan, alarm ids)`` in the writer; the alarms it raised or
    cleared are published once committed, like any alarm change."""
    got: dict[str, Any] = {}

    def change(c: Any) -> list[int]:
        got["loan"], ids = fn(c)
        return list(ids)

    svc.control.change(change)
    return got["loan"]  # type: ignore[no-any-return]


@router.post("/api/v1/key-loans/{loan_id}/return")
def give_back(request: Request, loan_id: LoanId, body: KeyReturnIn,
              who: Caller = roles("guard")) -> dict[str, Any]:  # fmt: skip
    """The keys are back, counted by the guard receiving them (接收人). A count short of
    what was lent is refused: report the missing ones lost."""
    svc = service(request)
    loan = _with_alarms(svc, lambda c: keys.return_(c, svc.epoch, loan_id, body.count, who.name,
                                                    svc.clock.now(), body.notes))  # fmt: skip
    return _view(svc, loan)


@router.post("/api/v1/key-loans/{loan_id}/inspection")
def inspection(request: Request, loan_id: LoanId, body: KeyInspectionIn,
               who: Caller = roles("guard")) -> dict[str, Any]:  # fmt: skip
    """A contractor's room inspected after the keys came back: ``ok`` crosses the loan off;
    not ok keeps it open, with what is to be put right."""
    svc = service(request)
    loan = svc.write(lambda c: keys.inspect(c, svc.epoch, loan_id, body.ok, body.inspected_by,
                                            body.notes, who.name, svc.clock.now()))  # fmt: skip
    return _view(svc, loan)


@router.post("/api/v1/key-loans/{loan_id}/lost")
def lost(request: Request, loan_id: LoanId, body: KeyLostIn,
         who: Caller = roles("guard")) -> dict[str, Any]:  # fmt: skip
    """Keys lost: the loan closes, the cabinet holds that many fewer, and ``key_lost``
    asks the control room to have the lock changed."""
    svc = service(request)
    now = svc.clock.now()
    loan = _with_alarms(svc, lambda c: keys.lost(c, svc.cfg, svc.epoch, loan_id, body.count,
                                                 body.notes, who.name, now))  # fmt: skip
    return _view(svc, loan)
