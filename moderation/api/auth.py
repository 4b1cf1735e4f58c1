"""Bearer-token authentication with roles, enforced and documented by one decorator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flask_smorest
from flask import g, request
from flask_smorest import abort

from moderation.api.inputs import RequestParser
from moderation.api.schemas import ErrorSchema
from moderation.extensions import db
from moderation.services.keys import Principal, authenticate

BACKEND, MODERATOR, ADMIN = "backend", "moderator", "admin"


def current_key() -> Principal:
    """Return the key that authenticated this request."""
    return g.api_key


def authenticate_request(roles: tuple[str, ...]) -> Principal:
    """Return the request's key if it has one of `roles`; abort 401/403 otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, message="Send an API key as 'Authorization: Bearer <token>'.",
              headers={"WWW-Authenticate": "Bearer"})
    key = authenticate(db.session, token.strip())
    if key is None:
        abort(401, message="Unknown or revoked API key.", headers={"WWW-Authenticate": "Bearer"})
    if key.role not in roles:
        abort(403, message=f"This endpoint needs the role {' or '.join(roles)}; this key has {key.role}.")
    g.api_key = key
    return key


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest blueprint that can require roles on a view, reading input with the service's limits."""

    ARGUMENTS_PARSER = RequestParser()

    def requires(self, *roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Require a bearer key with one of `roles`, and say so in the OpenAPI document."""

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                authenticate_request(roles)
                return view(*args, **kwargs)

            documented = self.doc(security=[{"bearerAuth": []}], description=f"Roles: {', '.join(roles)}.")(wrapper)
            documented = self.alt_response(401, schema=ErrorSchema, description="Missing or unknown key")(documented)
            return self.alt_response(403, schema=ErrorSchema, description="Key lacks the role")(documented)

        return decorator
