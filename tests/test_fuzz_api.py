"""Schemathesis against /openapi.json: generated requests, valid and invalid, for
every operation, sent through the whole app with a seeded admin's token. No 5xx,
and every response matches its documented status codes, content type and schema.

FUZZ_EXAMPLES bounds the examples per operation and mode (CI: the default).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 20))
# What must hold for every response. positive_data_acceptance is left out: the
# schema cannot express every rule (settings size and depth in bytes, no NUL
# characters), so a schema-valid body may rightly get a 422.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def operations(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operation, mode: GenerationMode, app, headers: dict):
    """A hypothesis test of one operation, sending `headers` with every case."""
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case):
        case.call_and_validate(app=app, headers=headers, checks=checks, excluded_checks=[positive_data_acceptance])

    return check


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_conforms_to_its_schema(operations, mode, app, api, factory):
    assert len(operations) >= 15
    for operation in operations:
        # A fresh tenant and login per operation: fuzzing logout or session
        # deletion must not break the token the next operation uses.
        world = factory.world()
        headers = {"Authorization": f"Bearer {api.login(world.owner)['access_token']}"}
        try:
            _fuzz(operation, mode, app, headers)()
        except Unsatisfiable:
            # An operation without parameters or body (GET /health) has nothing
            # that could be made invalid.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as error:
            raise AssertionError(f"{operation.label} ({mode.value}): {error}") from error
