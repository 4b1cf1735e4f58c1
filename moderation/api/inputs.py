"""Reading request input safely: bounded JSON, and no strings that no database can store as sent.

Every JSON body goes through `moderation.text.load_json` (nesting and number limits, never a RecursionError),
whether a view reads it through flask-smorest's arguments or `request.get_json()`. After a schema has loaded
the input, strings that the schema kept as sent (ids, tokens, reasons, word-list terms) are refused when
they hold a NUL or a lone surrogate; texts cleaned by `CleanText` have lost those already.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields
from webargs.core import missing
from webargs.flaskparser import FlaskParser, is_json_request

from moderation.text import JSONLimitError, load_json, unstorable_reason


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, parsing with the service's limits: `request.get_json()` answers 400 beyond them."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON as `load_json` does (keyword arguments are not supported)."""
        if kwargs:
            raise TypeError(f"unsupported arguments: {', '.join(kwargs)}")
        return load_json(s)


def _safe_name(key: str) -> str:
    """Return a key that can be echoed in an error message (lone surrogates and NUL escaped)."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _check(value: Any, field: fields.Field | None) -> Any:
    """Return the messages for `value` (loaded by `field`, if known), or None when it can be stored."""
    if isinstance(value, str):
        reason = unstorable_reason(value)
        return [reason] if reason else None
    if isinstance(value, list):
        inner = field.inner if isinstance(field, fields.List) else None
        found = {index: messages for index, item in enumerate(value) if (messages := _check(item, inner))}
        return found or None
    if isinstance(value, dict):
        if isinstance(field, fields.Dict):
            found = {}
            for key, item in value.items():
                reason = unstorable_reason(key) if isinstance(key, str) else None
                messages = [reason] if reason else _check(item, field.value_field)
                if messages:
                    found[_safe_name(str(key))] = messages
            return found or None
        return unstorable_fields(value, field.schema if isinstance(field, fields.Nested) else None) or None
    return None


def unstorable_fields(data: Any, schema: Schema | None) -> dict[str, Any]:
    """Return messages (marshmallow's shape, the client's field names) for unstorable strings in loaded `data`."""
    if not isinstance(data, dict):
        return {}
    errors: dict[str, Any] = {}
    for key, value in data.items():
        field = schema.fields.get(key) if schema is not None and isinstance(key, str) else None
        name = _safe_name(str((field.data_key or key) if field is not None else key))
        reason = unstorable_reason(key) if isinstance(key, str) else None
        messages = [reason] if reason else _check(value, field)
        if messages:
            errors[name] = messages
    return errors


class RequestParser(FlaskParser):
    """flask-smorest's parser, reading JSON with the service's limits and refusing unstorable strings."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            return missing
        return load_json(req.get_data(cache=True).decode("utf-8"))

    def _handle_invalid_json_error(self, error: Exception, req: Request, *args: Any, **kwargs: Any) -> NoReturn:
        if isinstance(error, JSONLimitError):
            abort(400, exc=error, messages={"json": [f"Invalid JSON body: {error.msg}."]},
                  message=f"The request body is {error.msg}.")
        super()._handle_invalid_json_error(error, req, *args, **kwargs)

    def _process_location_data(self, location_data: Any, schema: Schema, req: Request, location: str,
                               unknown: str | None, validators: Any) -> Any:
        data = super()._process_location_data(location_data, schema, req, location, unknown, validators)
        problems = unstorable_fields(data, schema)
        if problems:
            raise ValidationError(problems)
        return data
