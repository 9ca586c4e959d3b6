"""Attacks on the office's push (issue 11, finding 12): batches whose every row matches its
sha256 but is malformed otherwise answered 500 (12a), and COPY read some escapes otherwise
than the office did when it checked the hash, so a stored payload differed from the text
its stored sha256 names (12b). A gate's node token is all it takes."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from sync import wire
from tests.helpers import Office, pg_rows

SEQ_MAX = 2**63 - 1


def push(
    office: Office, token: str, body: bytes | str, epoch: int, base: int = 1
) -> tuple[int, Any]:
    """What a gate's POST /sync/v1/push gets: the status and the answer (JSON, or the text
    of a plain 500)."""
    req = urllib.request.Request(
        f"{office.url}/sync/v1/push?epoch={epoch}&base={base}",
        data=body.encode() if isinstance(body, str) else body,
        method="POST",
        headers={"Authorization": f"Bearer {token}",
                 "Content-Type": "text/tab-separated-values; charset=utf-8"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def line(seq: int | str, kind: str, payload: str, ref: str = "r") -> str:
    """A row as a gate writes it: the fields escaped, the hash over the payload's text."""
    sha = hashlib.sha256(payload.encode()).hexdigest()
    return f"{seq}\t{wire.escape(kind)}\t{wire.escape(ref)}\t{sha}\t{wire.escape(payload)}\n"


def raw_line(seq: int | str, kind: str, field: str, ref: str = "r") -> str:
    """A row whose payload field goes on the wire as given, hashed as the office reads it
    (``wire.unescape``): consistent with its sha256 by the office's own check."""
    sha = hashlib.sha256(wire.unescape(field).encode()).hexdigest()
    return f"{seq}\t{kind}\t{ref}\t{sha}\t{field}\n"


GOOD = line(1, "duty_log", '{"id": 1, "text": "all quiet"}')


@pytest.fixture
def office(tmp_path: Path, pg_url: str) -> Iterator[tuple[Office, str]]:
    office = Office(tmp_path, pg_url)
    token = office.token("office", "node", "add", "gate-x")
    office.start()
    yield office, token
    office.stop()


# (what, the row after a good first row, what its setting aside must name): rows the
# office can never store or apply. They are set aside, byte for byte, and what follows flows
# (issue 12: one such row used to stop a gate's push for good)
POISON: list[tuple[str, str, str]] = [
    ("a payload that is not JSON", line(2, "duty_log", "not json"), "seq 2: payload is not JSON"),
    ("JSON that is an array", line(2, "duty_log", "[1, 2]"), "seq 2: payload is not a JSON object"),
    ("a JSON string", line(2, "access_event", '"grant"'), "seq 2: payload is not a JSON object"),
    ("a kind the office does not know", line(2, "bogus", "{}"),
     "seq 2: kind 'bogus' is not a record the office knows"),
    ("a grant whose ts is a string",
     line(2, "access_event", '{"decision": "grant", "pass_id": "p1", "ts": "soon"}'),
     "seq 2: access_event.ts must be a number"),
    ("a grant whose pass_id is a number",
     line(2, "access_event", '{"decision": "grant", "pass_id": 12, "ts": 1800000000.0}'),
     "seq 2: access_event.pass_id must be text"),
    ("a grant whose pass_id is a list",
     line(2, "access_event", '{"decision": "grant", "pass_id": [1], "ts": 1800000000.0}'),
     "seq 2: access_event.pass_id must be text"),
    ("a slip fact without its number", line(2, "slip_released", '{"gate": "main"}'),
     "seq 2: slip_released.number must be text"),
    ("a slip fact closed at a string",
     line(2, "slip_released", '{"number": "FO-2026-00001", "closed_at": "noon"}'),
     "seq 2: slip_released.closed_at must be a number"),
    ("an alarm without a type", line(2, "alarm", '{"action": "raised", "at": 1800000000.0}'),
     "seq 2: alarm.type must be text"),
    ("U+0000 inside a JSON string (valid JSON, refused by jsonb)",
     line(2, "duty_log", '{"text": "a\\u0000b"}'), "seq 2: payload holds U+0000"),
    ("U+0000 inside a key", line(2, "duty_log", '{"a\\u0000": 1}'), "seq 2: payload holds U+0000"),
    ("a lone surrogate escape", line(2, "duty_log", '{"text": "\\ud800"}'),
     "seq 2: payload holds a lone surrogate"),
    ("NaN", line(2, "duty_log", '{"n": NaN}'), "NaN is not a JSON number"),
    ("Infinity", line(2, "duty_log", '{"n": -Infinity}'), "-Infinity is not a JSON number"),
    ("1e-999999 (refused by numeric)", line(2, "duty_log", '{"n": 1e-999999}'), "out of range"),
    ("nesting deeper than PostgreSQL's stack", line(2, "duty_log",
     '{"a": ' + "[" * 200_000 + "]" * 200_000 + "}"), "seq 2: payload is nested too deeply"),
    # a grant is read at once (against the office's revocations): Python's reading must hold
    ("a grant at 1e400 (infinite to Python)",
     line(2, "access_event", '{"decision": "grant", "pass_id": "p1", "ts": 1e400}'),
     "number 1e400 is out of range"),
    ("a grant nested deeper than Python parses", line(2, "access_event",
     '{"decision": "grant", "x": ' + "[" * 5000 + "]" * 5000 + "}"), "nested too deeply"),
    ("a grant spelt with an escape, whose ts is a string",
     line(2, "access_event", '{"decision": "\\u0067rant", "pass_id": "p1", "ts": "soon"}'),
     "seq 2: access_event.ts must be a number"),
    ("a payload that does not match its sha256",
     line(2, "duty_log", "{}").replace("\t{}\n", '\t{"x": 1}\n'),
     "seq 2: payload does not match its sha256"),
]  # fmt: skip

# (what, the batch after a good first row, what the refusal must name): batches that break
# the protocol itself, refused whole
MALFORMED: list[tuple[str, str, str]] = [
    ("seq 0", line(0, "duty_log", "{}"), "line 2: seq 0 is not between 1 and"),
    ("a negative seq", line(-3, "duty_log", "{}"), "line 2 is not seq, kind, ref, sha256"),
    ("a seq above 2^63 - 1", line(2**63, "duty_log", "{}"), f"line 2: seq {2**63} is not between"),
    ("a seq in Arabic-Indic digits", line("٢", "duty_log", "{}"), "line 2 is not seq, kind"),
    ("the same seq twice", line(1, "duty_log", '{"again": true}'), "seq 1: twice in one batch"),
    ("\\N as the whole payload field (NULL to COPY)", raw_line(2, "duty_log", "\\N"),
     "line 2: payload is not escaped as the protocol escapes"),
    ("\\x41 (A to COPY, x41 to the hash check)", raw_line(2, "duty_log", '{"t": "\\x41"}'),
     "line 2: payload is not escaped as the protocol escapes"),
    ("an octal escape", raw_line(2, "duty_log", '{"t": "\\101"}'), "payload is not escaped"),
    ("\\b (a backspace to COPY)", raw_line(2, "duty_log", '{"t": "\\b"}'),
     "payload is not escaped"),
    ("a backslash before the tab (a tab inside the field to COPY)",
     raw_line(2, "duty_log\\", "{}"), "line 2: kind is not escaped as the protocol escapes"),
    ("a raw CR in the payload", raw_line(2, "duty_log", '{"t": "a\rb"}'), "payload is not escaped"),
    ("a raw NUL in the ref", line(2, "duty_log", "{}", ref="a\x00b"),
     "line 2: ref is not escaped as the protocol escapes"),
    ("a last line cut short", line(2, "duty_log", "{}")[:-1], "line 2 does not end with a newline"),
]  # fmt: skip


def test_a_row_the_office_can_never_store_is_set_aside_whole_and_the_rest_flows(
    office: tuple[Office, str], pg_url: str
):
    """Each poisoned row between two good ones, in an epoch of its own: the batch is
    acknowledged whole, the good rows are stored, the poisoned one is kept byte for byte in
    ``set_aside`` with its reason and raised as an anomaly; sent again, it is a harmless
    duplicate (not a second anomaly)."""
    o, token = office
    after = line(3, "duty_log", '{"id": 3, "text": "after"}')
    wrong = []
    for epoch, (what, bad, named) in enumerate(POISON, 300):
        status, answer = push(o, token, GOOD + bad + after, epoch)
        if status != 200 or answer.get("acked_through") != 3:
            wrong.append(f"{what}: {status} {answer!r}"[:300])
            continue
        kinds = pg_rows(pg_url, "SELECT seq, kind FROM edge_events WHERE epoch = %s ORDER BY seq",
                        epoch)  # fmt: skip
        aside = pg_rows(pg_url, "SELECT seq, reason, raw FROM set_aside WHERE epoch = %s", epoch)
        if [k for _, k in kinds] != ["duty_log", "set_aside", "duty_log"]:
            wrong.append(f"{what}: stored {kinds}")
        elif len(aside) != 1 or named not in aside[0][1] or bytes(aside[0][2]) != bad.encode():
            wrong.append(f"{what}: set aside as {[(s, r) for s, r, _ in aside]}"[:300])
        again = push(o, token, GOOD + bad + after, epoch)
        if again[0] != 200 or len(pg_rows(pg_url, "SELECT 1 FROM set_aside WHERE epoch = %s",
                                          epoch)) != 1:  # fmt: skip
            wrong.append(f"{what}: sent again: {again}"[:300])
    assert not wrong, "\n".join(wrong)
    anomalies = pg_rows(pg_url, "SELECT count(*) FROM anomalies WHERE kind = 'set_aside'")
    assert anomalies == [(len(POISON),)]


def test_malformed_but_hash_consistent_batches_are_refused_by_name_and_leave_nothing(
    office: tuple[Office, str], pg_url: str
):
    """Each malformed batch, after a good row, in an epoch of its own: 422 naming the
    problem, and neither the good row nor the epoch's cursor is at the office after it."""
    o, token = office
    wrong = []
    for epoch, (what, bad, named) in enumerate(MALFORMED, 100):
        status, answer = push(o, token, GOOD + bad, epoch)
        detail = answer.get("detail", "") if isinstance(answer, dict) else answer
        if status != 422 or named not in detail:
            wrong.append(f"{what}: {status} {detail!r}")
        elif pg_rows(pg_url, "SELECT 1 FROM edge_events WHERE epoch = %s UNION ALL "
                    "SELECT 1 FROM edge_cursors WHERE epoch = %s", epoch, epoch):  # fmt: skip
            wrong.append(f"{what}: refused, but half applied")
    assert not wrong, "\n".join(wrong)

    # out-of-range query parameters: the columns are bigint
    for params in ({"epoch": 2**63}, {"epoch": 1, "base": 2**63}, {"epoch": 1, "base": 0}):
        status, answer = push(o, token, GOOD, params["epoch"], params.get("base", 1))
        assert status == 422, (params, answer)

    # a base that disagrees with the epoch's earlier batches
    assert push(o, token, GOOD, epoch=7, base=1)[0] == 200
    status, answer = push(o, token, line(2, "duty_log", "{}"), epoch=7, base=2)
    assert status == 422
    assert answer["detail"] == "base 2: this epoch began at seq 1 in earlier batches"
    assert "detail_zh" in answer
    status, answer = push(o, token, line(2, "duty_log", "{}"), epoch=8, base=3)
    assert (status, answer["detail"]) == (422, "seq 2: before the epoch's first seq 3")
    assert pg_rows(pg_url, "SELECT seq FROM edge_events WHERE epoch = 7") == [(1,)]
    assert push(o, token, line(2, "duty_log", "{}"), epoch=7, base=1)[1]["acked_through"] == 2


def test_fields_with_tabs_newlines_backslashes_and_astral_characters_arrive_as_sent(
    office: tuple[Office, str], pg_url: str
):
    o, token = office
    tricky = "tab\there nl\nthere cr\rback\\slash \\N \\\\N \\x41 \\101 😀 𠀋 \u2028 \\"
    ref = "ref " + tricky
    payload = to_json({"id": 1, "text": tricky, tricky: [tricky, 1.5, None]}).decode()
    status, answer = push(o, token, wire.encode([(1, "duty_log", ref, payload)]), epoch=1)
    assert (status, answer["acked_through"]) == (200, 1)
    [(got_ref, got_payload, got_sha)] = pg_rows(
        pg_url, "SELECT ref, payload, sha256 FROM edge_events WHERE epoch = 1"
    )
    assert got_ref == ref
    assert got_payload == json.loads(payload)
    assert got_sha == hashlib.sha256(payload.encode()).hexdigest()

    # valid JSON that jsonb keeps though Python's reading would not: kept, and still read
    odd = ['{"n": 1e400, "big": ' + "9" * 4000 + "}", '{"a": ' + "[" * 3000 + "]" * 3000 + "}"]
    status, _ = push(o, token, wire.encode([(2, "duty_log", "d2", odd[0]),
                                            (3, "duty_log", "d3", odd[1])]), epoch=1)  # fmt: skip
    assert status == 200
    clerk = o.token("user", "add", "客服小王", "--role", "clerk")
    status, events = o.call("GET", "/api/v1/events", clerk)
    assert status == 200 and len(events["items"]) == 3


# -- 12b: the escaping, property-tested ------------------------------------------------------

# text heavy in what COPY treats specially, and anything else (no surrogates: not UTF-8)
TRICKY = st.text(
    st.sampled_from(list("\\tnrNxbfv0178.A \r\x00é😀")) | st.characters(exclude_categories=("Cs",))
)


@given(TRICKY)
def test_escape_and_unescape_round_trip_over_any_text(s: str) -> None:
    assert wire.unescape(wire.escape(s)) == s
    assert "\t" not in wire.escape(s) and "\n" not in wire.escape(s)
    # what a gate writes is taken, unless it holds NUL (which PostgreSQL's text cannot)
    assert wire.canonical(wire.escape(s)) == ("\x00" not in s)


def test_copy_reads_every_field_the_office_accepts_as_the_office_does(pg_url: str) -> None:
    """The office checks the hash over ``wire.unescape(field)`` and hands ``field`` to COPY:
    for every field ``wire.decode`` accepts, COPY must read exactly that text. Fields are
    arbitrary (not only what ``escape`` makes): a gate's token is all an attacker needs."""
    conn = psycopg2.connect(dbname=pg_url.rsplit("/", 1)[1])
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE copied (kind text, ref text, payload text)")

    def copy_reads(fields: tuple[str, str, str]) -> tuple[str, str, str]:
        import io

        cur.execute("TRUNCATE copied")
        cur.copy_expert("COPY copied FROM STDIN", io.StringIO("\t".join(fields) + "\n"))
        cur.execute("SELECT kind, ref, payload FROM copied")
        return cur.fetchone()

    fields = TRICKY.filter(lambda f: "\t" not in f and "\n" not in f)

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(fields, fields, fields)
    def agree(kind: str, ref: str, payload: str) -> None:
        body = raw_line(1, kind, payload, ref)
        try:
            [row] = wire.decode(body)
        except ValueError:
            return  # refused before anything reads it
        assert copy_reads((row.kind, row.ref, row.payload)) == (
            wire.unescape(row.kind), wire.unescape(row.ref), wire.unescape(row.payload)
        )  # fmt: skip

    @settings(max_examples=200, deadline=None)
    @given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")))
    def honest(s: str) -> None:  # what a gate writes: COPY reads it back whole
        assert copy_reads((wire.escape(s), "", "")) == (s, "", "")

    try:
        agree()
        honest()
    finally:
        conn.close()


def decimals(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


JSON_TEXT = st.text(st.sampled_from(list('\\"\t\n\r/N x0😀𠀋é\u2028')) | st.characters(
    exclude_categories=("Cs",), exclude_characters="\x00"))  # fmt: skip


def test_what_the_office_stores_is_the_value_of_the_text_its_sha256_names(
    office: tuple[Office, str], pg_url: str
):
    """What exactly is compared (docs: sync.wire): the stored sha256 is of the gate's text,
    checked at receipt; jsonb keeps that text's value (not its spelling: key order and
    spacing are jsonb's own; numbers as exact decimals), so the stored payload equals the
    text parsed, strings exactly and numbers as decimals — for any strings in it.

    (Decimals, because that is what both hold: Hypothesis found 1.0068875611609122e+17,
    which jsonb keeps as the integer 100688756116091220 that the text means, while Python's
    float of the same text is 100688756116091216.)"""
    o, token = office
    seqs = iter(range(1, 10**6))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(JSON_TEXT, JSON_TEXT | st.floats(allow_nan=False, allow_infinity=False)
                           | st.integers(-(2**63), 2**63), max_size=5))  # fmt: skip
    def arrives(record: dict[str, Any]) -> None:
        seq = next(seqs)
        text = to_json(record).decode()  # as edge/outbox.py writes a payload
        status, answer = push(o, token, wire.encode([(seq, "duty_log", f"d{seq}", text)]), 1)
        assert status == 200, answer
        [(value, sha)] = pg_rows(
            pg_url,
            "SELECT payload::text, sha256 FROM edge_events WHERE epoch = 1 AND seq = %s",
            seq,
        )
        assert sha == hashlib.sha256(text.encode()).hexdigest()
        assert decimals(value) == decimals(text)

    arrives()
