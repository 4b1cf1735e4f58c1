"""The wire format of our Perspective drop-in (`commentanalyzer` v1alpha1): schemas and discovery document.

The marshmallow schemas validate requests and feed our OpenAPI document. The discovery document is what
Google's client libraries build `comments().analyze()` and `comments().suggestscore()` from, so it mirrors
the names and shapes of Perspective's own document; its `rootUrl` points at this server.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from marshmallow import Schema, fields, validate

API_NAME, API_VERSION = "commentanalyzer", "v1alpha1"
SCORE_TYPES = ["SCORE_TYPE_UNSPECIFIED", "PROBABILITY", "STD_DEV_SCORE", "PERCENTILE", "RAW"]
TEXT_TYPES = ["TEXT_TYPE_UNSPECIFIED", "PLAIN_TEXT", "HTML"]


# --- marshmallow schemas: validation of requests and the OpenAPI document ---

class PerspectiveTextEntry(Schema):
    text = fields.String(allow_none=True)
    type = fields.String(allow_none=True, validate=validate.OneOf(TEXT_TYPES))


class ArticleAndParentComment(Schema):
    article = fields.Nested(PerspectiveTextEntry, allow_none=True)
    parent_comment = fields.Nested(PerspectiveTextEntry, allow_none=True, data_key="parentComment")


class PerspectiveContext(Schema):
    entries = fields.List(fields.Nested(PerspectiveTextEntry), allow_none=True)
    article_and_parent_comment = fields.Nested(ArticleAndParentComment, allow_none=True,
                                               data_key="articleAndParentComment")


class AttributeParameters(Schema):
    score_type = fields.String(allow_none=True, data_key="scoreType", validate=validate.OneOf(SCORE_TYPES))
    score_threshold = fields.Float(allow_none=True, data_key="scoreThreshold", validate=validate.Range(0, 1))


class PerspectiveScore(Schema):
    value = fields.Float(required=True)
    type = fields.String(validate=validate.OneOf(SCORE_TYPES))


class SpanScore(Schema):
    begin = fields.Integer(required=True)
    end = fields.Integer(required=True)
    score = fields.Nested(PerspectiveScore, required=True)


class AttributeScores(Schema):
    summary_score = fields.Nested(PerspectiveScore, data_key="summaryScore")
    span_scores = fields.List(fields.Nested(SpanScore), data_key="spanScores")


class _CommentRequest(Schema):
    comment = fields.Nested(PerspectiveTextEntry, allow_none=True)
    context = fields.Nested(PerspectiveContext, allow_none=True)
    languages = fields.List(fields.String(), allow_none=True)
    client_token = fields.String(allow_none=True, data_key="clientToken")
    session_id = fields.String(allow_none=True, data_key="sessionId")
    community_id = fields.String(allow_none=True, data_key="communityId")


class AnalyzeCommentRequest(_CommentRequest):
    requested_attributes = fields.Dict(keys=fields.String(), values=fields.Nested(AttributeParameters),
                                       allow_none=True, data_key="requestedAttributes")
    do_not_store = fields.Boolean(allow_none=True, data_key="doNotStore")
    span_annotations = fields.Boolean(allow_none=True, data_key="spanAnnotations")


class AnalyzeCommentResponse(Schema):
    attribute_scores = fields.Dict(keys=fields.String(), values=fields.Nested(AttributeScores),
                                   data_key="attributeScores")
    languages = fields.List(fields.String())
    detected_languages = fields.List(fields.String(), data_key="detectedLanguages")
    client_token = fields.String(data_key="clientToken")


class SuggestCommentScoreRequest(_CommentRequest):
    attribute_scores = fields.Dict(keys=fields.String(), values=fields.Nested(AttributeScores),
                                   allow_none=True, data_key="attributeScores")


class SuggestCommentScoreResponse(Schema):
    detected_languages = fields.List(fields.String(), data_key="detectedLanguages")
    requested_languages = fields.List(fields.String(), data_key="requestedLanguages")
    client_token = fields.String(data_key="clientToken")


class PerspectiveErrorDetail(Schema):
    code = fields.Integer(required=True, metadata={"example": 400})
    message = fields.String(required=True)
    status = fields.String(required=True, metadata={"example": "INVALID_ARGUMENT"})


class PerspectiveErrorBody(Schema):
    """Google's error shape, used by the Perspective endpoints only."""

    error = fields.Nested(PerspectiveErrorDetail, required=True)



# --- the discovery document ---

def _ref(name: str) -> dict[str, str]:
    return {"$ref": name}


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": {"type": "string"}}


def _map(description: str, value: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "additionalProperties": _ref(value)}


def _object(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"id": name, "type": "object", "description": description, "properties": properties}


_PARAMETERS = {
    "key": _string("API key: a Kommentare key with the backend role.", location="query"),
    "alt": _string("Data format for the response.", location="query", default="json", enum=["json"]),
    "fields": _string("Selector of the fields to include in the response (ignored).", location="query"),
    "prettyPrint": {"type": "boolean", "description": "Pretty-print the response (ignored).", "location": "query",
                    "default": "true"},
    "quotaUser": _string("Ignored; quota is counted per key.", location="query"),
}

_SCHEMAS = {
    "TextEntry": _object("TextEntry", "A text and its type.", {
        "text": _string("UTF-8 encoded text."),
        "type": _string("Type of the text: PLAIN_TEXT or HTML (tags are removed before scoring).", enum=TEXT_TYPES),
    }),
    "ArticleAndParentComment": _object("ArticleAndParentComment", "Article and parent comment (ignored).", {
        "article": _ref("TextEntry"),
        "parentComment": _ref("TextEntry"),
    }),
    "Context": _object("Context", "Context of the comment (accepted, not used for scoring).", {
        "entries": {"type": "array", "description": "Context text entries.", "items": _ref("TextEntry")},
        "articleAndParentComment": _ref("ArticleAndParentComment"),
    }),
    "AttributeParameters": _object("AttributeParameters", "Options for one requested attribute.", {
        "scoreType": _string("Only PROBABILITY is supported.", enum=SCORE_TYPES),
        "scoreThreshold": {"type": "number", "format": "float",
                           "description": "Leave the attribute out of the answer when its score is below this."},
    }),
    "Score": _object("Score", "A score and its type.", {
        "value": {"type": "number", "format": "float", "description": "Score value, 0 to 1."},
        "type": _string("Type of the score.", enum=SCORE_TYPES),
    }),
    "SpanScore": _object("SpanScore", "The score of a span of the text (character offsets).", {
        "begin": {"type": "integer", "format": "int32", "description": "First character of the span."},
        "end": {"type": "integer", "format": "int32", "description": "One past the last character of the span."},
        "score": _ref("Score"),
    }),
    "AttributeScores": _object("AttributeScores", "Scores of one attribute.", {
        "summaryScore": _ref("Score"),
        "spanScores": {"type": "array", "description": "Scores of spans of the text.", "items": _ref("SpanScore")},
    }),
    "AnalyzeCommentRequest": _object("AnalyzeCommentRequest", "The comment to score and what to score.", {
        "comment": _ref("TextEntry"),
        "context": _ref("Context"),
        "requestedAttributes": _map("Attribute name (TOXICITY, SEVERE_TOXICITY; THREAT when the serving model "
                                    "has a threat head) to options.", "AttributeParameters"),
        "languages": _strings("Languages of the comment; only de is supported. Absent means de."),
        "doNotStore": {"type": "boolean", "description": "Accepted; analyze never stores anything."},
        "spanAnnotations": {"type": "boolean", "description": "Return spanScores."},
        "clientToken": _string("Echoed in the response."),
        "sessionId": _string("Accepted and ignored."),
        "communityId": _string("Accepted and ignored."),
    }),
    "AnalyzeCommentResponse": _object("AnalyzeCommentResponse", "Scores of the requested attributes.", {
        "attributeScores": _map("Attribute name to its scores.", "AttributeScores"),
        "languages": _strings("Languages the comment was scored in."),
        "detectedLanguages": _strings("Languages of the comment as assumed by the server."),
        "clientToken": _string("The request's clientToken."),
    }),
    "SuggestCommentScoreRequest": _object("SuggestCommentScoreRequest", "A moderator's decision on a comment.", {
        "comment": _ref("TextEntry"),
        "context": _ref("Context"),
        "attributeScores": _map("Attribute name to the suggested score (0 approved, 1 rejected).", "AttributeScores"),
        "languages": _strings("Languages of the comment; only de is supported."),
        "clientToken": _string("Echoed in the response; 'comment:<id>' names the comment."),
        "sessionId": _string("Accepted and ignored."),
        "communityId": _string("Accepted and ignored."),
    }),
    "SuggestCommentScoreResponse": _object("SuggestCommentScoreResponse", "Acknowledgement of a suggestion.", {
        "detectedLanguages": _strings("Languages of the comment as assumed by the server."),
        "requestedLanguages": _strings("The request's languages."),
        "clientToken": _string("The request's clientToken."),
    }),
}


def _method(name: str, description: str, request: str, response: str) -> dict[str, Any]:
    path = f"{API_VERSION}/comments:{name}"
    return {
        "id": f"{API_NAME}.comments.{name}",
        "path": path,
        "flatPath": path,
        "httpMethod": "POST",
        "description": description,
        "parameters": {},
        "parameterOrder": [],
        "request": _ref(request),
        "response": _ref(response),
    }


_RESOURCES = {
    "comments": {
        "methods": {
            "analyze": _method("analyze", "Analyzes the provided text and returns scores for requested attributes.",
                               "AnalyzeCommentRequest", "AnalyzeCommentResponse"),
            "suggestscore": _method("suggestscore", "Suggest comment scores as training data.",
                                    "SuggestCommentScoreRequest", "SuggestCommentScoreResponse"),
        },
    },
}


def discovery_document(root_url: str) -> dict[str, Any]:
    """Return the discovery document with `root_url` (ending in '/') as the API's root."""
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": f"{API_NAME}:{API_VERSION}",
        "name": API_NAME,
        "version": API_VERSION,
        "revision": "1",
        "title": "Perspective Comment Analyzer API (Kommentare drop-in, German)",
        "description": "Scores German comments with the Kommentare model in the shape of Google's Perspective API.",
        "protocol": "rest",
        "rootUrl": root_url,
        "servicePath": "",
        "baseUrl": root_url,
        "parameters": deepcopy(_PARAMETERS),
        "resources": deepcopy(_RESOURCES),
        "schemas": deepcopy(_SCHEMAS),
    }
