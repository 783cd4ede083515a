"""Schema-driven fuzzing of the HTTP API: schemathesis generates requests from the service's own
OpenAPI document and sends them in-process (ASGI transport, no socket): no 5xx, and every status,
content type and body matches what the document declares (errors included)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import TINY_DOCS  # noqa: E402
from patentcpc.models.linear import LinearCPCModel  # noqa: E402
from patentcpc.serving import ServeConfig, create_app  # noqa: E402

_MODEL = LinearCPCModel.fit([t for t, _ in TINY_DOCS] * 2, [[c] for _, c in TINY_DOCS] * 2)
APP = create_app(_MODEL, ServeConfig(max_docs=8, max_chars=2000, max_body_bytes=20_000, max_wait_ms=0))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_document_declares_the_error_responses():
    doc = APP.openapi()
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "408", "413", "422", "500"} <= set(responses)
    err = responses["422"]["content"]["application/json"]["schema"]
    assert err["properties"]["error"]["required"] == ["code", "message"]


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case):
    case.call_and_validate(checks=CHECKS)
