"""schemathesis against the OpenAPI document: whatever is sent, no 5xx and no stack trace."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from edge import users
from edge.api import create_app
from edge.config import parse
from edge.service import Service
from edge.sessions import COOKIE

_dir = Path(tempfile.mkdtemp(prefix="gatehouse-fuzz-"))
_svc = Service(
    parse(
        {
            "node": {"id": "fuzz", "data_dir": str(_dir)},
            "database": {"url": f"sqlite:///{_dir}/edge.db"},
            "gates": [{"id": "main"}],
        }
    )
)
_svc.writer.start()
_svc.throttle.limit = 10**9
# admin reaches every route
TOKEN = _svc.write(lambda c: users.add(c, "fuzzer", "admin", _svc.clock.now()))
_app = create_app(_svc)
# the API's description is for people logged in (or this machine): the fuzzer logs in
_session = _app.state.accounts.sessions.start("fuzzer", "admin")
schema = schemathesis.openapi.from_asgi("/openapi.json", _app, cookies={COOKIE: _session.sid})


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case):
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
    assert "Traceback" not in response.text
