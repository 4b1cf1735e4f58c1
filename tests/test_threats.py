"""Threat as a category of its own: routing holds a likely threat, the queue shows it first, Perspective's THREAT.

The app here serves the tiny pipeline with a threat head (`threat_model_dir`) at thresholds under which a
threat's toxicity alone would publish it; the model without a head (`tiny_model_dir`) stands for every model
trained before threats were a category.
"""

from __future__ import annotations

import pytest

from moderation.ml import load_model
from moderation.models import PENDING, REJECTED
from moderation.services.routing import Rules, Thresholds, route
from tests.conftest import FRIENDLY, THREATS, TOXIC
from tests.moderation_helpers import submit
from tests.web.conftest import sign_in

# The tiny threat model scores its threats 0.60-0.77 and its insults about 0.8 (decision threshold 0.5).
APPROVE, REJECT = 0.7, 0.9
LOW_THREAT = "Wir wissen, wo deine Kinder zur Schule gehen."  # a training threat: toxicity about 0.64, below APPROVE
ANALYZE = "/v1alpha1/comments:analyze"


@pytest.fixture
def app_config(app_config, threat_model_dir):
    return {**app_config, "MODEL_DIR": str(threat_model_dir), "APPROVE_THRESHOLD": APPROVE,
            "REJECT_THRESHOLD": REJECT}


@pytest.fixture(scope="module")
def threat_model(threat_model_dir):
    return load_model(threat_model_dir)


# --- routing, as a plain function ---

D = Thresholds(approve=0.3, reject=0.8, decision=0.5, audit_rate=1.0)


@pytest.mark.parametrize(("toxicity", "rules", "status", "reasons"), [
    (0.1, Rules(), PENDING, ("threat_likely",)),  # would be published by score
    (0.4, Rules(), PENDING, ("threat_likely", "toxicity_uncertain")),
    (0.6, Rules(suspect_terms=("x",)), PENDING, ("threat_likely", "suspect_term", "toxicity_likely")),
    # Not rejected by score alone: a person sees it (and toxicity_high, the reason of a decision the model took
    # alone, is not given, so that retraining weighs the decision as one on a held comment).
    (0.95, Rules(), PENDING, ("threat_likely", "toxicity_likely")),
    (0.1, Rules(premoderation=True), PENDING, ("threat_likely", "premoderation")),
    # Explicit rules keep their precedence.
    (0.1, Rules(banned_terms=("x",)), REJECTED, ("banned_term",)),
    (0.95, Rules(author_banned=True), REJECTED, ("author_banned", "toxicity_high")),
])
def test_a_likely_threat_is_held_whatever_its_toxicity(toxicity, rules, status, reasons):
    routing = route(toxicity, D, rules, draw=0.0, threat=True)  # draw 0 < audit rate 1: any auto decision audited
    assert (routing.status, routing.reasons, routing.auto, routing.audited) == (status, reasons, None, False)


def test_without_a_threat_routing_is_unchanged():
    assert route(0.1, D, draw=1.0).reasons == () and route(0.95, D, draw=1.0).reasons == ("toxicity_high",)
    assert route(0.1, Thresholds(approve=0.3, reject=0.8), threat=True).reasons == ("threat_likely",)


# --- the service with a threat head ---

def test_a_threat_scoring_low_is_held_and_comes_first_in_the_queue(client, auth, threat_model):
    score = threat_model.score(LOW_THREAT, explain=False)
    assert score.threat_likely and score.toxicity < APPROVE  # what makes this test meaningful
    assert all(threat_model.score(text, explain=False).toxicity > score.toxicity for text in TOXIC[:3])

    friendly = submit(client, auth, author="leser-0", text=FRIENDLY[0])
    insults = [submit(client, auth, author=f"leser-{i + 1}", text=text) for i, text in enumerate(TOXIC[:3])]
    threat = submit(client, auth, author="leser-9", text=LOW_THREAT)
    assert friendly["status"] == "approved"
    assert all(c["status"] == "pending" and "threat_likely" not in c["reasons"] for c in insults)
    assert (threat["status"], threat["reasons"], threat["category"]) == ("pending", ["threat_likely"], "threat")

    for sort in ("toxicity", "oldest"):
        page = client.get("/v1/moderation/queue", query_string={"sort": sort}, headers=auth["moderator"]).json
        assert [c["id"] for c in page["comments"]][0] == threat["id"], sort
        # Paging one at a time walks the same order, across the threat and the others.
        ids, cursor = [], None
        while True:
            query = {"sort": sort, "limit": 1, **({"cursor": cursor} if cursor else {})}
            one = client.get("/v1/moderation/queue", query_string=query, headers=auth["moderator"]).json
            ids += [c["id"] for c in one["comments"]]
            cursor = one["next_cursor"]
            if cursor is None:
                break
        assert ids == [c["id"] for c in page["comments"]] and len(ids) == 4, sort

    claimed = client.post("/v1/moderation/queue/claim", json={"limit": 1}, headers=auth["moderator"]).json
    assert [c["id"] for c in claimed["comments"]] == [threat["id"]]


def test_the_queue_page_labels_the_threat_in_german(client, auth, tokens):
    threat = submit(client, auth, text=LOW_THREAT)
    insult = submit(client, auth, author="leser-2", text=TOXIC[0])
    assert insult["status"] == "pending" and insult["toxicity"] > threat["toxicity"]
    assert sign_in(client, tokens["moderator"]).status_code == 302
    page = client.get("/moderation/").text
    assert '<span class="chip chip-bad">Drohung</span>' in page
    assert '<span class="category">Drohung</span>' in page
    assert page.index(f"#{threat['id']}<") < page.index(f"#{insult['id']}<")


def test_perspective_threat_answers_from_the_threat_head(client, auth, threat_model):
    body = {"comment": {"text": LOW_THREAT}, "requestedAttributes": {"THREAT": {}, "TOXICITY": {}}}
    response = client.post(ANALYZE, json=body, headers=auth["backend"])
    assert response.status_code == 200, response.json
    scores = response.json["attributeScores"]
    expected = threat_model.score(LOW_THREAT, explain=False)
    assert scores["THREAT"]["summaryScore"] == {"value": pytest.approx(expected.threat), "type": "PROBABILITY"}
    assert scores["TOXICITY"]["summaryScore"]["value"] == pytest.approx(expected.toxicity)
    spans = client.post(ANALYZE, json={**body, "spanAnnotations": True}, headers=auth["backend"]).json
    whole = spans["attributeScores"]["THREAT"]["spanScores"][0]
    assert (whole["begin"], whole["end"]) == (0, len(LOW_THREAT))
    assert whole["score"]["value"] == pytest.approx(expected.threat)


# --- a model without a threat head: what every model trained before it does ---

@pytest.fixture
def old_app(app_config, tiny_model_dir, make_app):
    return make_app({**app_config, "MODEL_DIR": str(tiny_model_dir)})


def test_a_model_without_threat_head_never_gives_threat_likely(old_app, auth_for):
    model = load_model(old_app.config["MODEL_DIR"])
    assert not model.has_threat_head
    client, auth = old_app.test_client(), auth_for(old_app)
    for n, text in enumerate(THREATS):
        assert model.score(text, explain=False).threat is None
        stored = submit(client, auth, author=f"leser-{n}", text=text)
        assert "threat_likely" not in stored["reasons"] and stored["category"] != "threat"


def test_perspective_threat_stays_unsupported_without_a_threat_head(old_app, auth_for):
    body = {"comment": {"text": LOW_THREAT}, "requestedAttributes": {"THREAT": {}}}
    response = old_app.test_client().post(ANALYZE, json=body, headers=auth_for(old_app)["backend"])
    assert response.status_code == 400
    assert response.json["error"]["message"] == "Attribute THREAT does not support request languages: de"
