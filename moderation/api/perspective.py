"""A drop-in for clients of Google's Perspective API (Coral, Google's client libraries), German only.

`POST /v1alpha1/comments:analyze` scores a comment and stores nothing; `POST /v1alpha1/comments:suggestscore`
stores a moderator's decision as a training label; `GET /$discovery/rest` describes both for Google's
client libraries. These endpoints speak Perspective's dialect throughout: the key may come as `?key=`,
and every error has Google's shape `{"error": {"code", "message", "status"}}` instead of ours.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import current_app, g, request
from flask.views import MethodView
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from moderation.api.auth import BACKEND, Blueprint
from moderation.api.perspective_discovery import (
    API_VERSION,
    AnalyzeCommentRequest,
    AnalyzeCommentResponse,
    PerspectiveErrorBody,
    SuggestCommentScoreRequest,
    SuggestCommentScoreResponse,
    discovery_document,
)
from moderation.db import database_unavailable
from moderation.errors import ModerationError
from moderation.extensions import classifier, db
from moderation.ml import LoadedModel, Score
from moderation.services.feedback import record_feedback
from moderation.services.keys import authenticate
from moderation.text import clean_text, html_to_text, load_json

log = logging.getLogger(__name__)
blp = Blueprint("perspective", __name__, description="Perspective API drop-in (for Coral and Google's clients).")

SOURCE = "perspective"
LANGUAGE = "de"
MAX_ID_LENGTH = 200
PROBABILITY_TYPES = {None, "SCORE_TYPE_UNSPECIFIED", "PROBABILITY"}
# TOXICITY is the model's probability; SEVERE_TOXICITY is its square, a stricter monotone derivation (no
# separate model). INSULT/PROFANITY are not offered: the model names a category but gives no probability.
ATTRIBUTES: dict[str, Callable[[Score], float]] = {
    "TOXICITY": lambda score: score.toxicity,
    "SEVERE_TOXICITY": lambda score: score.toxicity * score.toxicity,
}
# THREAT is the threat head's probability, measured at training (metadata.json's `threat`; docs/model-card.md):
# answered only by a model that has one, otherwise unsupported as any other attribute.
THREAT_ATTRIBUTES: dict[str, Callable[[Score], float]] = {"THREAT": lambda score: score.threat}


def analyzable(model: LoadedModel) -> dict[str, Callable[[Score], float]]:
    """Return the attributes AnalyzeComment answers with `model`."""
    return {**ATTRIBUTES, **THREAT_ATTRIBUTES} if model.has_threat_head else ATTRIBUTES
GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 405: "UNIMPLEMENTED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE"}
# A Host header that may be echoed in the discovery document: a name or IPv4 address, or an IPv6 literal,
# with an optional port. Anything else (paths, quotes, user info) is refused rather than reflected.
HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")
KEY_PARAMETER = {"in": "query", "name": "key", "required": False, "schema": {"type": "string"},
                 "description": "A backend-role key (or send 'Authorization: Bearer <key>')."}


class PerspectiveError(Exception):
    """A refusal in Perspective's words, rendered as Google's error shape."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _unsupported(attribute: str, languages: Iterable[str]) -> PerspectiveError:
    return PerspectiveError(400, f"Attribute {attribute} does not support request languages: {','.join(languages)}")


# --- errors: Google's shape for everything that goes wrong on these endpoints ---

def error_response(code: int, message: str, headers: dict | None = None) -> tuple[dict, int, dict]:
    """Build Google's error shape."""
    body = {"error": {"code": code, "message": message, "status": GOOGLE_STATUS.get(code, "UNKNOWN")}}
    return body, code, headers or {}


def _flatten(messages: Any, path: str = "") -> list[str]:
    """Turn marshmallow's nested messages into "comment.type: Must be one of ..." lines."""
    if isinstance(messages, dict):
        return [line for key, value in messages.items() for line in _flatten(value, f"{path}.{key}".lstrip("."))]
    if isinstance(messages, list):
        texts = [m for m in messages if isinstance(m, str)]
        lines = [f"{path}: {' '.join(texts)}".lstrip(": ")] if texts else []
        return lines + [line for m in messages if not isinstance(m, str) for line in _flatten(m, path)]
    return [f"{path}: {messages}"]


def _http_error(error: HTTPException) -> tuple[dict, int, dict]:
    db.session.rollback()
    code = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = (data.get("messages") or {}).get("json")
    if code == 413:
        return error_response(400, f"Request payload size exceeds the limit: {request.max_content_length} bytes.")
    if code in (400, 422) and messages:
        text = "; ".join(_flatten(messages))
        if "Invalid JSON" in text:
            reason = f" {data['message']}" if data.get("message") else ""  # what a limit refused, if one did
            return error_response(400, f"Invalid JSON payload received.{reason}")
        return error_response(400, f"Invalid JSON payload received. {text}")
    if code == 500:
        return error_response(500, "Internal error encountered.")
    # moderation/limits.py adds Retry-After to a 429.
    return error_response(code, error.description or error.name)


def _database_error(error: DBAPIError) -> tuple[dict, int, dict]:
    db.session.rollback()
    if database_unavailable(error):
        log.error("database_unavailable", extra={"path": request.path})
        return error_response(503, "The service is currently unavailable.", {"Retry-After": "5"})
    log.exception("database_error", extra={"path": request.path})
    return error_response(500, "Internal error encountered.")


def _domain_error(error: ModerationError) -> tuple[dict, int, dict]:
    db.session.rollback()
    return error_response(400 if error.status == 422 else error.status, error.message)


blp.register_error_handler(PerspectiveError, lambda error: error_response(error.code, error.message))
blp.register_error_handler(HTTPException, _http_error)
blp.register_error_handler(DBAPIError, _database_error)
blp.register_error_handler(ModerationError, _domain_error)


@blp.before_request
def _require_json() -> None:
    # Google's front end reads a non-JSON body as query parameters and refuses it; so do we, in its words.
    if request.method == "POST" and not request.is_json:
        raise PerspectiveError(400, "Invalid JSON payload received. Send the body with "
                                    "'Content-Type: application/json'.")


# --- authentication: Google's `?key=` (or x-goog-api-key, or our bearer header), backend role only ---

def _token() -> str | None:
    token = request.args.get("key") or request.headers.get("X-Goog-Api-Key")
    if not token:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token if scheme.lower() == "bearer" else ""
    return token.strip() or None


def requires_backend_key(view: Callable[..., Any]) -> Callable[..., Any]:
    """Require a backend key as Google's APIs take it, refusing in Perspective's words."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _token()
        if token is None:
            raise PerspectiveError(403, "The request is missing a valid API key.")
        key = authenticate(db.session, token)
        if key is None:
            raise PerspectiveError(400, "API key not valid. Please pass a valid API key.")
        if key.role != BACKEND:
            raise PerspectiveError(403, f"This API key has the role {key.role}; the Perspective endpoints "
                                        f"need a {BACKEND} key.")
        g.api_key = key
        return view(*args, **kwargs)

    documented = blp.alt_response(400, schema=PerspectiveErrorBody, description="Invalid request or key")(wrapper)
    return blp.alt_response(403, schema=PerspectiveErrorBody, description="Missing key or not a backend key")(
        documented)


# --- request reading ---

def _comment_text(entry: dict | None, *, stored: bool) -> str:
    """Return the comment's text: HTML reduced to text; plain text as sent (span offsets refer to it) or cleaned."""
    entry = entry or {}
    raw = entry.get("text") or ""
    if entry.get("type") == "HTML":
        text = html_to_text(raw)
    else:
        text = clean_text(raw) if stored else raw
    if not text.strip():
        raise PerspectiveError(400, "Comment must be non-empty.")
    limit = current_app.config["MAX_TEXT_LENGTH"]
    if len(text) > limit:
        raise PerspectiveError(400, f"Comment text too long. Max length is {limit} characters.")
    return text


def _languages(requested: list[str] | None, attributes: list[str],
               supported: dict[str, Callable[[Score], float]] = ATTRIBUTES) -> list[str]:
    """Check the attributes against `supported` and the languages; return the languages (German when none)."""
    languages = [code for code in requested or [] if code]
    for name in attributes:
        if name not in supported:
            raise _unsupported(name, languages or [LANGUAGE])
    for code in languages:
        if code.replace("_", "-").split("-")[0].lower() != LANGUAGE:
            raise _unsupported(attributes[0], languages)
    return languages or [LANGUAGE]


def _comment_id(data: dict[str, Any], text: str) -> str:
    """Return the id to deduplicate by: Coral's commentID in the context, else the clientToken, else the text."""
    for entry in (data.get("context") or {}).get("entries") or []:
        try:
            payload = load_json((entry or {}).get("text") or "")
        except ValueError:
            continue
        if isinstance(payload, dict):
            for name in ("commentID", "commentId", "comment_id"):
                if isinstance(payload.get(name), str | int) and str(payload[name]).strip():
                    return _checked_id(str(payload[name]).strip())
    token = (data.get("client_token") or "").strip()
    if token:
        return _checked_id(token.removeprefix("comment:"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _checked_id(ident: str) -> str:
    if len(ident) > MAX_ID_LENGTH:
        raise PerspectiveError(400, f"The comment id must be at most {MAX_ID_LENGTH} characters.")
    return ident


def _probability(value: float) -> dict[str, Any]:
    return {"value": value, "type": "PROBABILITY"}


def _spans(model: LoadedModel, text: str, score: Score) -> list[tuple[int, int, Score]]:
    """The whole text with its score, then each highlighted word scored on its own."""
    spans = [(0, len(text), score)]
    for highlight in score.highlights:
        spans.append((highlight.start, highlight.end, model.score(highlight.text, explain=False)))
    return sorted(spans, key=lambda span: (span[0], -span[1]))


# --- views ---

@blp.route(f"/{API_VERSION}/comments:analyze", parameters=[KEY_PARAMETER])
class AnalyzeComment(MethodView):
    @blp.response(200, AnalyzeCommentResponse)
    @requires_backend_key
    @blp.arguments(AnalyzeCommentRequest(), error_status_code=400)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Score a German comment like Perspective's AnalyzeComment (TOXICITY, SEVERE_TOXICITY; THREAT with a
        model that has a threat head); store nothing."""
        text = _comment_text(data.get("comment"), stored=False)
        requested = data.get("requested_attributes") or {}
        if not requested:
            raise PerspectiveError(400, "At least one attribute must be requested in requestedAttributes.")
        model = classifier.model  # one model for the whole answer, even if a new version is promoted meanwhile
        supported = analyzable(model)
        languages = _languages(data.get("languages"), list(requested), supported)
        for name, options in requested.items():
            if (options or {}).get("score_type") not in PROBABILITY_TYPES:
                raise PerspectiveError(400, f"Attribute {name} does not support score type "
                                            f"{options['score_type']}; use PROBABILITY.")
        with_spans = bool(data.get("span_annotations"))
        score = model.score(text, explain=with_spans)
        spans = _spans(model, text, score) if with_spans else []
        attribute_scores = {}
        for name, options in requested.items():
            derive = supported[name]
            value = derive(score)
            threshold = (options or {}).get("score_threshold")
            if threshold is not None and value < threshold:
                continue
            attribute_scores[name] = {"summary_score": _probability(value)}
            if with_spans:
                attribute_scores[name]["span_scores"] = [
                    {"begin": begin, "end": end, "score": _probability(derive(scored))}
                    for begin, end, scored in spans
                ]
        body: dict[str, Any] = {"languages": languages, "detected_languages": [LANGUAGE]}
        if attribute_scores:  # Perspective leaves the map out when every attribute fell below its threshold
            body["attribute_scores"] = attribute_scores
        if data.get("client_token"):
            body["client_token"] = data["client_token"]
        return body


@blp.route(f"/{API_VERSION}/comments:suggestscore", parameters=[KEY_PARAMETER])
class SuggestCommentScore(MethodView):
    @blp.response(200, SuggestCommentScoreResponse)
    @requires_backend_key
    @blp.arguments(SuggestCommentScoreRequest(), error_status_code=400)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Store a moderator's decision (0 approved, 1 rejected) as a training label; the latest one wins."""
        text = _comment_text(data.get("comment"), stored=True)
        scores = data.get("attribute_scores") or {}
        if not scores:
            raise PerspectiveError(400, "At least one attribute score must be given in attributeScores.")
        languages = _languages(data.get("languages"), list(scores))
        attribute = "TOXICITY" if "TOXICITY" in scores else next(iter(scores))
        value = ((scores[attribute] or {}).get("summary_score") or {}).get("value")
        if value is None or not 0 <= value <= 1:
            raise PerspectiveError(400, f"attributeScores.{attribute}.summaryScore.value must be between 0 and 1.")
        client_token = data.get("client_token") or None
        if client_token is not None and len(client_token) > MAX_ID_LENGTH:
            raise PerspectiveError(400, f"clientToken must be at most {MAX_ID_LENGTH} characters.")
        record_feedback(db.session, source=SOURCE, external_id=_comment_id(data, text), text=text,
                        label=int(value >= 0.5), attribute=attribute, client_token=client_token)
        body: dict[str, Any] = {"detected_languages": [LANGUAGE], "requested_languages": languages}
        if client_token:
            body["client_token"] = client_token
        return body


@blp.route("/$discovery/rest")
class Discovery(MethodView):
    @blp.response(200, description="Google API discovery document of the `commentanalyzer` API")
    def get(self) -> Any:
        """Describe the Perspective drop-in for Google's client libraries (`?version=v1alpha1`).

        Its rootUrl is MODERATION_PUBLIC_URL when set. Otherwise it is the host this request was sent to,
        answered with `Cache-Control: no-store` and `Vary: Host` so that no cache hands one client's Host
        header (perhaps forged) to another, whose client would then send its key there.
        """
        version = request.args.get("version", API_VERSION)
        if version != API_VERSION:
            raise PerspectiveError(404, f"Discovery document not found for API service: commentanalyzer, "
                                        f"version: {version}")
        public_url = current_app.config.get("PUBLIC_URL")
        if public_url:
            return discovery_document(public_url)
        if not HOST.match(request.host):
            raise PerspectiveError(400, "Invalid Host header.")
        return discovery_document(f"{request.scheme}://{request.host}/"), {"Cache-Control": "no-store",
                                                                          "Vary": "Host"}
