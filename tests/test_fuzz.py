"""The gateway fuzzes itself: schemathesis (Hypothesis-based) generates
requests for every operation of /openapi.json — valid ones (positive) and
ones that break the schema (negative) — against the real gateway (gunicorn +
gevent) and its fake backend, and checks every answer: never a 5xx, a status
and content type the document lists, a body that matches its schema, and
invalid input refused with a 4xx. Bounded: EXAMPLES per operation and mode;
a fixed seed in CI (derandomized), a random one locally."""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import KEY

EXAMPLES = 120
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MODES = {
    "positive": (schemathesis.GenerationMode.POSITIVE, CHECKS),
    "negative": (schemathesis.GenerationMode.NEGATIVE, [*CHECKS, negative_data_rejection]),
}


@pytest.fixture(scope="module")
def fuzzed_gateway(gateway_factory, tmp_path_factory):
    ledger = tmp_path_factory.mktemp("fuzz") / "usage.db"
    return gateway_factory(TELEMETRY_ENABLED="true", TELEMETRY_DB=str(ledger), VLLM_MODEL="fuzzed")


@pytest.fixture(scope="module")
def api_schema(fuzzed_gateway):
    return schemathesis.openapi.from_url(fuzzed_gateway.url + "/openapi.json")


def test_the_document_is_openapi_3_1_and_lists_every_route(fuzzed_gateway):
    doc = requests.get(fuzzed_gateway.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    assert {"/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/v1/models",
            "/health", "/health/ready", "/metrics", "/stats"} <= set(doc["paths"])  # fmt: skip


def _operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_schemathesis_finds_nothing(api_schema, fuzzed_gateway, mode):
    generation, checks = MODES[mode]
    session = requests.Session()
    failures = []
    for operation in _operations(api_schema):

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=generation))
        def run(case):
            case.call_and_validate(base_url=fuzzed_gateway.url, session=session, checks=checks,
                                   headers={"x-api-key": KEY}, timeout=30)  # fmt: skip

        try:
            run()
        except Unsatisfiable:
            assert generation is schemathesis.GenerationMode.NEGATIVE  # nothing to break: no input
        except (Exception, BaseExceptionGroup) as exc:  # every operation's first failure
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)[:20000]
    assert "Traceback" not in fuzzed_gateway.log()
