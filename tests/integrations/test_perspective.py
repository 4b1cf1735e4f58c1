"""The Perspective API drop-in: Google's own client against real gunicorn, shapes, errors, feedback labels."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from sqlalchemy import select

from moderation.db import make_engine
from moderation.errors import InvalidInput
from moderation.extensions import db
from moderation.models import FeedbackLabel
from moderation.observability import JsonFormatter
from moderation.services import feedback
from moderation.services.feedback import feedback_labels, record_feedback
from tests.servers import ROOT, free_port, running, service_env

ANALYZE = "/v1alpha1/comments:analyze"
SUGGEST = "/v1alpha1/comments:suggestscore"
INSULT = "Halt die Fresse, du Arschloch."
FRIENDLY = "Danke für den ausgewogenen Artikel, sehr informativ."


def analyze_body(**extra) -> dict:
    return {"comment": {"text": INSULT}, "requestedAttributes": {"TOXICITY": {}}, **extra}


def coral_feedback(comment_id: str, value: float, text: str = INSULT) -> dict:
    """What Coral's sendFeedback posts when a moderator approves (0) or rejects (1) a comment."""
    return {
        "comment": {"text": text},
        "attributeScores": {"TOXICITY": {"summaryScore": {"value": value}}},
        "languages": ["de"],
        "context": {"entries": [{"text": json.dumps({"commentID": comment_id, "commentStatus": "REJECTED"})}]},
        "clientToken": f"comment:{comment_id}",
    }


def stored_labels(app) -> list[tuple[str, str, int, str]]:
    with app.app_context():
        rows = db.session.scalars(select(FeedbackLabel).order_by(FeedbackLabel.id))
        return [(r.source, r.external_id, r.label, r.attribute) for r in rows]


# --- Google's client library against a real gunicorn ---

@pytest.mark.slow
def test_google_client_drives_analyze_and_suggestscore_on_gunicorn(tmp_path, tiny_model_dir):
    port = free_port()
    database_url = f"sqlite:///{tmp_path / 'perspective.db'}"
    server_log = tmp_path / "server.log"
    env = service_env(PORT=str(port), MODERATION_DATABASE_URL=database_url, MODERATION_MODEL_DIR=str(tiny_model_dir),
                      WEB_CONCURRENCY="1", SERVER_LOG=str(server_log))
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz"):
        token = subprocess.run(
            [sys.executable, "-m", "moderation", "keys", "create", "--role", "backend", "--name", "perspective"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        with build("commentanalyzer", "v1alpha1", developerKey=token, static_discovery=False,
                   cache_discovery=False, discoveryServiceUrl=f"{base}/$discovery/rest?version=v1alpha1") as client:
            analyzed = client.comments().analyze(body={
                "comment": {"text": INSULT},
                "requestedAttributes": {"TOXICITY": {}, "SEVERE_TOXICITY": {"scoreThreshold": 0.99}},
                "languages": ["de"], "spanAnnotations": True, "doNotStore": True, "clientToken": "req-1",
            }).execute()
            print(json.dumps(analyzed, indent=2))  # shown with `pytest -s`; pasted into the hand-over
            first = client.comments().suggestscore(body=coral_feedback("c-42", 1.0)).execute()
            second = client.comments().suggestscore(body=coral_feedback("c-42", 0.0)).execute()
            with pytest.raises(HttpError) as refused:
                client.comments().analyze(body=analyze_body(requestedAttributes={"SPAM": {}})).execute()
        with build("commentanalyzer", "v1alpha1", developerKey="mk_not-a-key", static_discovery=False,
                   cache_discovery=False, discoveryServiceUrl=f"{base}/$discovery/rest?version=v1alpha1") as stranger:
            with pytest.raises(HttpError) as unknown_key:
                stranger.comments().analyze(body=analyze_body()).execute()

    assert set(analyzed) == {"attributeScores", "languages", "detectedLanguages", "clientToken"}
    assert analyzed["clientToken"] == "req-1" and analyzed["languages"] == ["de"]
    toxicity = analyzed["attributeScores"]["TOXICITY"]
    assert "SEVERE_TOXICITY" not in analyzed["attributeScores"]  # below its scoreThreshold of 0.99
    assert toxicity["summaryScore"]["type"] == "PROBABILITY" and 0.5 < toxicity["summaryScore"]["value"] <= 1
    assert toxicity["spanScores"][0] == {"begin": 0, "end": len(INSULT), "score": toxicity["summaryScore"]}
    assert any(INSULT[s["begin"]:s["end"]] == "Arschloch" for s in toxicity["spanScores"])
    assert first == second == {"clientToken": "comment:c-42", "detectedLanguages": ["de"], "requestedLanguages": ["de"]}
    assert refused.value.status_code == 400
    assert json.loads(refused.value.content) == {"error": {
        "code": 400, "message": "Attribute SPAM does not support request languages: de", "status": "INVALID_ARGUMENT"}}
    assert unknown_key.value.status_code == 400
    assert json.loads(unknown_key.value.content)["error"] == {
        "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}

    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(FeedbackLabel.source, FeedbackLabel.external_id, FeedbackLabel.text,
                                   FeedbackLabel.label, FeedbackLabel.attribute)).all()
    engine.dispose()
    assert rows == [("perspective", "c-42", INSULT, 0, "TOXICITY")]  # the later approval won, still one row
    logged = server_log.read_text()
    assert "/v1alpha1/comments:analyze" in logged and token not in logged and token[:12] not in logged


# --- response shapes (Flask test client, SQLite and PostgreSQL) ---

def test_analyze_answers_in_perspectives_shape_and_stores_nothing(client, tokens, count_rows):
    before = count_rows()
    response = client.post(f"{ANALYZE}?key={tokens['backend']}", json=analyze_body(
        requestedAttributes={"TOXICITY": {"scoreType": "PROBABILITY"}, "SEVERE_TOXICITY": {}}, doNotStore=False))
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"attributeScores", "languages", "detectedLanguages"}  # no clientToken sent, none echoed
    assert body["languages"] == body["detectedLanguages"] == ["de"]
    toxicity = body["attributeScores"]["TOXICITY"]["summaryScore"]["value"]
    assert body["attributeScores"] == {
        "TOXICITY": {"summaryScore": {"value": toxicity, "type": "PROBABILITY"}},
        "SEVERE_TOXICITY": {"summaryScore": {"value": pytest.approx(toxicity ** 2), "type": "PROBABILITY"}},
    }
    assert count_rows() == before


@pytest.mark.parametrize(("threshold", "kept"), [(None, True), (0.0, True), (1.0, False)])
def test_score_threshold_leaves_the_attribute_out(client, tokens, threshold, kept):
    options = {} if threshold is None else {"scoreThreshold": threshold}
    body = client.post(f"{ANALYZE}?key={tokens['backend']}",
                       json=analyze_body(comment={"text": FRIENDLY}, requestedAttributes={"TOXICITY": options})).json
    assert ("attributeScores" in body) is kept
    assert body["languages"] == ["de"]


def test_span_scores_cover_the_text_and_the_highlighted_words(client, tokens):
    text = "Ein guter Artikel. " + INSULT
    body = client.post(f"{ANALYZE}?key={tokens['backend']}",
                       json=analyze_body(comment={"text": text}, spanAnnotations=True, clientToken="t-1")).json
    spans = body["attributeScores"]["TOXICITY"]["spanScores"]
    assert body["clientToken"] == "t-1"
    assert spans[0]["begin"] == 0 and spans[0]["end"] == len(text)
    assert spans[0]["score"] == body["attributeScores"]["TOXICITY"]["summaryScore"]
    assert len(spans) > 1 and all(0 <= s["begin"] < s["end"] <= len(text) for s in spans)
    assert "Arschloch" in {text[s["begin"]:s["end"]] for s in spans}
    assert all(set(s["score"]) == {"value", "type"} for s in spans)
    without = client.post(f"{ANALYZE}?key={tokens['backend']}", json=analyze_body(comment={"text": text})).json
    assert "spanScores" not in without["attributeScores"]["TOXICITY"]


def test_html_is_scored_as_its_text_and_keys_come_in_three_ways(client, tokens):
    plain = client.post(f"{ANALYZE}?key={tokens['backend']}", json=analyze_body()).json
    html = {"comment": {"text": "<p>Halt die <b>Fresse</b>, du Arschloch.</p>", "type": "HTML"},
            "requestedAttributes": {"TOXICITY": {}}, "languages": ["de-DE"]}
    for response in (
        client.post(f"{ANALYZE}?key={tokens['backend']}", json=html),
        client.post(ANALYZE, json=html, headers={"Authorization": f"Bearer {tokens['backend']}"}),
        client.post(ANALYZE, json=html, headers={"X-Goog-Api-Key": tokens["backend"]}),
    ):
        assert response.status_code == 200
        assert response.json["attributeScores"] == plain["attributeScores"]
        assert response.json["languages"] == ["de-DE"]


# --- errors in Google's shape, nothing stored ---

TOO_LONG = "a" * 5001


@pytest.mark.parametrize(("path", "body", "code", "message"), [
    (ANALYZE, analyze_body(requestedAttributes={"SPAM": {}}), 400,
     "Attribute SPAM does not support request languages: de"),
    (ANALYZE, analyze_body(requestedAttributes={"TOXICITY": {}, "ATTACK_ON_AUTHOR": {}}), 400,
     "Attribute ATTACK_ON_AUTHOR does not support request languages: de"),
    (ANALYZE, analyze_body(requestedAttributes={"INSULT": {}}, languages=["de"]), 400,
     "Attribute INSULT does not support request languages: de"),
    (ANALYZE, analyze_body(languages=["en"]), 400, "Attribute TOXICITY does not support request languages: en"),
    (ANALYZE, analyze_body(comment={"text": ""}), 400, "Comment must be non-empty."),
    (ANALYZE, analyze_body(comment={"text": " \n "}), 400, "Comment must be non-empty."),
    (ANALYZE, {"requestedAttributes": {"TOXICITY": {}}}, 400, "Comment must be non-empty."),
    (ANALYZE, analyze_body(comment={"text": TOO_LONG}), 400, "Comment text too long. Max length is 5000 characters."),
    (ANALYZE, analyze_body(requestedAttributes={}), 400,
     "At least one attribute must be requested in requestedAttributes."),
    (ANALYZE, analyze_body(requestedAttributes={"TOXICITY": {"scoreType": "STD_DEV_SCORE"}}), 400,
     "Attribute TOXICITY does not support score type STD_DEV_SCORE; use PROBABILITY."),
    (ANALYZE, analyze_body(requestedAttributes={"TOXICITY": {"scoreThreshold": 2}}), 400,
     "Invalid JSON payload received. requestedAttributes.TOXICITY.value.scoreThreshold: "
     "Must be greater than or equal to 0 and less than or equal to 1."),
    (ANALYZE, analyze_body(unknownField=1), 400, "Invalid JSON payload received. unknownField: Unknown field."),
    (ANALYZE, "{kaputt", 400, "Invalid JSON payload received."),
    (ANALYZE, ["a list"], 400, "Invalid JSON payload received. _schema: Invalid input type."),
    (SUGGEST, {**coral_feedback("c-1", 1), "attributeScores": {"SPAM": {"summaryScore": {"value": 1}}}}, 400,
     "Attribute SPAM does not support request languages: de"),
    (SUGGEST, {**coral_feedback("c-1", 1), "languages": ["fr"]}, 400,
     "Attribute TOXICITY does not support request languages: fr"),
    (SUGGEST, coral_feedback("c-1", 1, text=""), 400, "Comment must be non-empty."),
    (SUGGEST, coral_feedback("c-1", 1.5), 400, "attributeScores.TOXICITY.summaryScore.value must be between 0 and 1."),
    (SUGGEST, {**coral_feedback("c-1", 1), "attributeScores": {"TOXICITY": {}}}, 400,
     "attributeScores.TOXICITY.summaryScore.value must be between 0 and 1."),
    (SUGGEST, {**coral_feedback("c-1", 1), "attributeScores": {}}, 400,
     "At least one attribute score must be given in attributeScores."),
    (SUGGEST, "{kaputt", 400, "Invalid JSON payload received."),
])
def test_refusals_use_googles_error_shape_and_store_nothing(client, tokens, count_rows, path, body, code, message):
    before = count_rows()
    url = f"{path}?key={tokens['backend']}"
    if isinstance(body, str):
        response = client.post(url, data=body, content_type="application/json")
    else:
        response = client.post(url, json=body)
    assert response.status_code == code
    assert response.json == {"error": {"code": code, "message": message, "status": "INVALID_ARGUMENT"}}
    assert count_rows() == before


@pytest.mark.parametrize("path", [ANALYZE, SUGGEST])
@pytest.mark.parametrize(("key", "code", "status", "message"), [
    (None, 403, "PERMISSION_DENIED", "The request is missing a valid API key."),
    ("", 403, "PERMISSION_DENIED", "The request is missing a valid API key."),
    ("mk_unknown", 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
    ("moderator", 403, "PERMISSION_DENIED",
     "This API key has the role moderator; the Perspective endpoints need a backend key."),
    ("admin", 403, "PERMISSION_DENIED",
     "This API key has the role admin; the Perspective endpoints need a backend key."),
])
def test_missing_unknown_or_wrong_role_keys_are_refused(client, tokens, count_rows, path, key, code, status, message):
    before = count_rows()
    url = path if key is None else f"{path}?key={tokens.get(key, key)}"
    response = client.post(url, json=coral_feedback("c-1", 1) if path == SUGGEST else analyze_body())
    assert response.status_code == code
    assert response.json == {"error": {"code": code, "message": message, "status": status}}
    assert count_rows() == before


def test_a_body_that_is_not_json_is_refused_in_googles_words(client, tokens, count_rows):
    before = count_rows()
    response = client.post(f"{ANALYZE}?key={tokens['backend']}", data={"comment": INSULT})
    assert response.status_code == 400 and response.json["error"]["status"] == "INVALID_ARGUMENT"
    assert count_rows() == before


def test_an_oversized_body_and_the_rate_limit_answer_in_googles_shape(app_config, make_app, tokens):
    limited = make_app({**app_config, "RATELIMIT_ENABLED": True, "RATELIMIT_PER_KEY": "2/minute",
                        "MAX_BODY_BYTES": 2000})
    client = limited.test_client()
    too_big = client.post(f"{ANALYZE}?key={tokens['backend']}", json=analyze_body(comment={"text": "x" * 3000}))
    assert too_big.status_code == 400
    assert too_big.json["error"]["message"] == "Request payload size exceeds the limit: 2000 bytes."
    client.post(f"{ANALYZE}?key={tokens['backend']}", json=analyze_body())
    throttled = client.post(f"{ANALYZE}?key={tokens['backend']}", json=analyze_body())
    assert throttled.status_code == 429
    assert throttled.json["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "Retry-After" in throttled.headers


# --- SuggestCommentScore: one label per comment, the latest decision wins ---

def test_suggestscore_stores_one_label_per_comment_and_the_latest_wins(app, client, tokens):
    url = f"{SUGGEST}?key={tokens['backend']}"
    assert client.post(url, json=coral_feedback("c-7", 1.0)).status_code == 200
    assert stored_labels(app) == [("perspective", "c-7", 1, "TOXICITY")]
    assert client.post(url, json=coral_feedback("c-7", 0.2)).status_code == 200
    assert stored_labels(app) == [("perspective", "c-7", 0, "TOXICITY")]
    # The same comment named only by clientToken, then only by context, is still the same row.
    only_token = {**coral_feedback("c-7", 0.9), "context": None}
    assert client.post(url, json=only_token).status_code == 200
    only_context = {k: v for k, v in coral_feedback("c-7", 0.1).items() if k != "clientToken"}
    response = client.post(url, json=only_context)
    assert response.json == {"detectedLanguages": ["de"], "requestedLanguages": ["de"]}
    assert stored_labels(app) == [("perspective", "c-7", 0, "TOXICITY")]
    severe = {"comment": {"text": "<p>Du <i>Idiot</i></p>", "type": "HTML"}, "clientToken": "comment:c-8",
              "attributeScores": {"SEVERE_TOXICITY": {"summaryScore": {"value": 1}}}}
    assert client.post(url, json=severe).json["requestedLanguages"] == ["de"]
    anonymous = {"comment": {"text": FRIENDLY}, "attributeScores": {"TOXICITY": {"summaryScore": {"value": 0}}}}
    assert client.post(url, json=anonymous).status_code == 200
    labels = stored_labels(app)
    assert labels[1] == ("perspective", "c-8", 1, "SEVERE_TOXICITY")
    assert labels[2][1].startswith("sha256:") and len(labels) == 3
    with app.app_context():
        assert feedback_labels(db.session) == [(INSULT, 0), ("Du Idiot", 1), (FRIENDLY, 0)]


def test_record_feedback_updates_when_a_concurrent_insert_won(app, monkeypatch):
    with app.app_context():
        record_feedback(db.session, source="perspective", external_id="c-9", text="eins", label=0,
                        attribute="TOXICITY")
        real_find, calls = feedback._find, []

        def find_missing_first(*args):
            calls.append(args)
            return None if len(calls) == 1 else real_find(*args)

        # Simulates the other request inserting between our lookup and our insert.
        monkeypatch.setattr(feedback, "_find", find_missing_first)
        row = record_feedback(db.session, source="perspective", external_id="c-9", text="zwei", label=1,
                              attribute="TOXICITY", client_token="comment:c-9")
        assert len(calls) == 2 and (row.text, row.label, row.client_token) == ("zwei", 1, "comment:c-9")
        assert feedback_labels(db.session) == [("zwei", 1)]
        assert feedback_labels(db.session, since=row.updated_at) == [("zwei", 1)]
        assert feedback_labels(db.session, source="other") == []


def test_record_feedback_refuses_a_label_other_than_0_or_1(app):
    with app.app_context(), pytest.raises(InvalidInput, match="label must be 0 or 1"):
        record_feedback(db.session, source="perspective", external_id="c", text="t", label=2, attribute="TOXICITY")


# --- discovery document, OpenAPI, logs ---

def test_discovery_document_points_at_the_requesting_host(client):
    response = client.get("/$discovery/rest?version=v1alpha1", base_url="https://kommentare.example")
    assert response.status_code == 200
    doc = response.json
    assert doc["rootUrl"] == "https://kommentare.example/" and doc["servicePath"] == ""
    assert (doc["name"], doc["version"], doc["id"]) == ("commentanalyzer", "v1alpha1", "commentanalyzer:v1alpha1")
    methods = doc["resources"]["comments"]["methods"]
    assert {name: (m["httpMethod"], m["path"]) for name, m in methods.items()} == {
        "analyze": ("POST", "v1alpha1/comments:analyze"),
        "suggestscore": ("POST", "v1alpha1/comments:suggestscore"),
    }
    assert doc["parameters"]["key"]["location"] == "query"
    refs = set(json.dumps(doc).split('"$ref": "')[1:])
    assert {ref.split('"')[0] for ref in refs} <= set(doc["schemas"])
    assert client.get("/$discovery/rest").json["rootUrl"] == "http://localhost/"
    missing = client.get("/$discovery/rest?version=v1")
    assert missing.status_code == 404 and missing.json["error"]["status"] == "NOT_FOUND"


def test_openapi_documents_the_perspective_endpoints(client):
    paths = client.get("/openapi.json").json["paths"]
    assert {ANALYZE, SUGGEST, "/$discovery/rest"} <= set(paths)
    assert paths[ANALYZE]["parameters"][0]["name"] == "key"
    assert paths[ANALYZE]["post"]["summary"].startswith("Score a German comment")


def test_the_key_never_reaches_the_logs(client, tokens, caplog):
    caplog.set_level(logging.DEBUG)
    token = tokens["backend"]
    client.post(f"{ANALYZE}?key={token}", json=analyze_body())
    client.post(f"{ANALYZE}?key={token}", json=analyze_body(requestedAttributes={"SPAM": {}}))
    client.post(f"{SUGGEST}?key={token}", json=coral_feedback("c-1", 1))
    client.get(f"/$discovery/rest?version=v1alpha1&key={token}")
    lines = [JsonFormatter().format(record) for record in caplog.records]
    routes = {json.loads(line).get("route") for line in lines}
    assert {ANALYZE, SUGGEST, "/$discovery/rest"} <= routes
    for line in lines:
        assert token not in line and token[:12] not in line and INSULT not in line



FORGED = "evil.example"


@pytest.mark.parametrize("public_url", ["https://kommentare.example", "https://kommentare.example/"])
def test_a_configured_public_url_is_the_root_whatever_the_host_header(app_config, make_app, public_url):
    client = make_app({**app_config, "PUBLIC_URL": public_url}).test_client()
    for headers in ({"Host": FORGED}, {"Host": "localhost", "X-Forwarded-Host": FORGED},
                    {"Host": f"{FORGED}:443", "X-Forwarded-Proto": "http"}):
        response = client.get("/$discovery/rest", headers=headers)
        assert response.status_code == 200
        assert response.json["rootUrl"] == response.json["baseUrl"] == "https://kommentare.example/"
        assert FORGED not in response.get_data(as_text=True)


def test_a_public_url_with_a_path_prefix_is_kept(app_config, make_app):
    client = make_app({**app_config, "PUBLIC_URL": "https://www.zeitung.example/kommentare"}).test_client()
    assert client.get("/$discovery/rest").json["rootUrl"] == "https://www.zeitung.example/kommentare/"


def test_without_a_public_url_the_host_is_echoed_only_to_the_client_that_sent_it(client):
    # No shared cache may keep one client's Host for another (cache poisoning would send keys elsewhere).
    response = client.get("/$discovery/rest", headers={"Host": "kommentare.example:8443"})
    assert response.json["rootUrl"] == "http://kommentare.example:8443/"
    assert "no-store" in response.headers["Cache-Control"] and "Host" in response.headers["Vary"]


@pytest.mark.parametrize("host", ['evil.example/"x', "evil.example?x=1", "a b", "evil.example:port", "ex@mple.com"])
def test_a_malformed_host_is_not_echoed(client, host):
    response = client.get("/$discovery/rest", headers={"Host": host})
    assert response.status_code == 400 and response.json["error"]["status"] == "INVALID_ARGUMENT"
    assert host not in response.get_data(as_text=True)
