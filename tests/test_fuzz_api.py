"""Schemathesis against /openapi.json: no input produces a 500, every answer matches its documented schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 25
# What the issue asks: no 500, and every answer as documented. Schemathesis' "positive data accepted"
# check is left out on purpose: schema-valid requests are refused for semantic reasons the document
# cannot express (an opaque cursor we never handed out, a comment id that does not exist, a ban that
# ends in the past), and those refusals are tested one by one elsewhere.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


def test_api_conforms_to_its_document(app, auth):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case):
            response = case.call(headers=auth["admin"])
            case.validate_response(response, checks=CHECKS)

        conforms()
