"""Fuzzing every input model in edge/inputs.py (issue 11): whatever payload a device
publishes, ``parse`` returns the model or raises ``Refused`` (the one refusal the MQTT
handlers count and acknowledge), and what it accepts holds the model's promises: a swipe's
card is bounded text that parses as a card or raises ValueError, its ``ts`` is a finite
time between 2000 and at most FUTURE_SKEW_S ahead of the node's clock, and the read time
taken from it is never fresher than the moment it arrived.

Fast by default (``make test``); ``GATEHOUSE_FUZZ_EXAMPLES`` raises the count
(``make fuzz``). The review's payloads are kept as explicit examples, as raw bytes: Python's
json module reads ``NaN`` and ``Infinity`` literals, pydantic's parser is what the node
runs and what is tested here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.cards import parse_card
from edge.inputs import (
    EARLIEST_TS,
    FUTURE_SKEW_S,
    INTERCOM_EVENTS,
    LATEST_TS,
    AlarmInputIn,
    IntercomIn,
    Refused,
    SwipeIn,
    parse,
    read_monotonic,
)

EXAMPLES = int(os.environ.get("GATEHOUSE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NOW = 1_800_000_000.0  # the node's wall clock in these tests (2027)
MODELS = [SwipeIn, AlarmInputIn, IntercomIn]
KEYS = ["card", "ts", "type", "state", "location", "event"]

# the review's payloads (findings 13 and the poison swipes before them) and a few more
REVIEW_PAYLOADS = [
    b'{"card": "0040856634", "ts": NaN}',
    b'{"card": "0040856634", "ts": Infinity}',
    b'{"card": "0040856634", "ts": -Infinity}',
    b'{"card": "0040856634", "ts": -1e300}',
    b'{"card": "0040856634", "ts": 1e999}',
    b'{"card": "0040856634", "ts": "NaN"}',
    b'{"card": "0040856634", "ts": %r}' % (NOW + 3600),  # an hour ahead
    b'{"card": "0040856634", "ts": %r}' % LATEST_TS,
    b'{"card": "0040856634", "ts": 1' + b"0" * 5000 + b"}",
    b"[" * 100_000,
    b'{"card": ' * 10_000,
    b"\xef\xbb\xbf" + b'{"card": "0040856634"}',  # a byte-order mark
    b'{"card": "\\ud800"}',  # a lone surrogate
    b'{"card": "0040856634\\u0000"}',
    b'{"card": "%s"}' % (b"9" * 100_000),
    b'{"card": "\xff\xfe"}',  # not UTF-8
    b'{"type": "fire", "state": "active", "location": "%s"}' % (b"x" * 300),
    b'{"event": "emergency", "event": "open_sesame"}',  # the last of two keys is taken
    b"",
    b"null",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def near_now() -> st.SearchStrategy[float]:
    """Times around the node's clock, where the allowance's edge is."""
    return st.floats(-10.0, 10.0).map(lambda d: NOW + d)


def documents() -> st.SearchStrategy[bytes]:
    """JSON objects with the models' keys (and others), values of any JSON type; written
    as Python's json would, NaN and Infinity literals included."""
    words = st.sampled_from(["active", "normal", "fire", *INTERCOM_EVENTS])
    value = json_values | near_now() | words
    body = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), value, max_size=5)
    return body.map(lambda d: json.dumps(d, allow_nan=True).encode())


def payloads() -> st.SearchStrategy[bytes]:
    return st.binary(max_size=400) | documents() | st.sampled_from(REVIEW_PAYLOADS)


def accepted(model: type, payload: bytes) -> Any:
    """The model, or None if refused; anything else raised fails the test."""
    try:
        return parse(model, payload, now=NOW)
    except Refused:
        return None


def check_swipe(swipe: SwipeIn) -> None:
    assert 1 <= len(swipe.card) <= 64 and swipe.card == swipe.card.strip()
    with contextlib.suppress(ValueError):  # what the service does next: a card, or refused
        parse_card(swipe.card)
    if swipe.ts is not None:
        assert math.isfinite(swipe.ts)
        assert EARLIEST_TS <= swipe.ts <= min(LATEST_TS, NOW + FUTURE_SKEW_S)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(payload=payloads())
def test_every_payload_is_the_model_or_refused(model: type, payload: bytes):
    got = accepted(model, payload)
    if got is None:
        return
    if isinstance(got, SwipeIn):
        check_swipe(got)
    elif isinstance(got, AlarmInputIn):
        assert re.fullmatch(r"[a-z_]{2,40}", got.type) and got.state in ("active", "normal")
        assert got.location is None or 1 <= len(got.location) <= 200
    else:
        assert got.event in INTERCOM_EVENTS


@FUZZ
@given(ts=st.floats(allow_nan=True, allow_infinity=True) | near_now(), mono=st.floats(0, 1e9))
@example(ts=math.nan, mono=100.0)
@example(ts=math.inf, mono=100.0)
@example(ts=NOW + 3600, mono=100.0)  # an hour ahead: refused, never "now" for an hour
@example(ts=NOW + FUTURE_SKEW_S, mono=100.0)  # the allowance's edge: taken, as now
def test_a_swipes_read_time_is_never_fresher_than_its_arrival(ts: float, mono: float):
    """Whatever ``ts`` a swipe carries, the read time the gate ages it from is finite, never
    after its arrival (``mono``), and older by exactly how far the stamp is behind."""
    payload = json.dumps({"card": "0040856634", "ts": ts}, allow_nan=True).encode()
    swipe = accepted(SwipeIn, payload)
    fresh_enough = math.isfinite(ts) and EARLIEST_TS <= ts <= NOW + FUTURE_SKEW_S
    assert (swipe is not None) == fresh_enough
    if swipe is None:
        return
    read_at = read_monotonic(swipe, mono, NOW)
    assert math.isfinite(read_at) and read_at <= mono
    assert read_at == mono - max(0.0, NOW - ts)


def test_the_time_module_is_the_clock_when_none_is_given():
    """The service calls parse without ``now``: an hour ahead of the real clock is refused
    then too (the check is not only in effect where a test passes a clock)."""
    import time

    ahead = json.dumps({"card": "0040856634", "ts": time.time() + 3600}).encode()
    with pytest.raises(Refused, match="ahead of this node's clock"):
        parse(SwipeIn, ahead)
    assert parse(SwipeIn, json.dumps({"card": "0040856634", "ts": time.time()}).encode())
