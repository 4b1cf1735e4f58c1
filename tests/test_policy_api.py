"""The routing policy through the API: roles, validation, the audit trail, persistence, and its effect on routing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from moderation.extensions import db
from moderation.models import Setting, SettingChange
from moderation.services import policy as policy_service
from tests.conftest import BORDERLINE, CALIBRATED_APPROVE, FRIENDLY
from tests.moderation_helpers import submit
from tests.test_bad_input import assert_error

POLICY = "/v1/moderation/policy"
DEFAULTS = {"max_leak": 0.02, "min_reject_precision": 0.95, "expected_removal_rate": 0.10, "audit_rate": 0.0}
NEW = {"max_leak": 0.05, "min_reject_precision": 0.9, "expected_removal_rate": 0.08, "audit_rate": 0.03}


@pytest.fixture
def calibrated_app(app_config, calibrated_model_dir, make_app):
    """An app on the calibrated model with no manual thresholds: routing follows the policy."""
    config = {key: value for key, value in app_config.items() if key not in ("APPROVE_THRESHOLD", "REJECT_THRESHOLD")}
    return make_app({**config, "MODEL_DIR": str(calibrated_model_dir)})


@pytest.fixture
def calibrated(calibrated_app):
    return calibrated_app.test_client()


@pytest.fixture
def calibrated_auth(calibrated_app):
    from moderation.services.keys import create_key

    with calibrated_app.app_context():
        tokens = {role: create_key(db.session, role=role, name=f"test-{role}")[1]
                  for role in ("backend", "moderator", "admin")}
        db.session.commit()
    return {role: {"Authorization": f"Bearer {token}"} for role, token in tokens.items()}


@pytest.mark.parametrize(("role", "status"), [("backend", 403), ("moderator", 200), ("admin", 200)])
def test_who_may_read_the_policy(client, auth, role, status):
    response = client.get(POLICY, headers=auth[role])
    assert response.status_code == status
    if status == 200:
        assert response.json["policy"] == DEFAULTS and response.json["source"] == "environment"
        assert response.json["history"] == [] and response.json["updated_by"] is None


def test_reading_needs_a_key(client):
    assert_error(client.get(POLICY), 401, "unauthorized")


@pytest.mark.parametrize("role", ["backend", "moderator"])
def test_only_admins_change_the_policy(client, auth, count_rows, role):
    before = count_rows()
    assert_error(client.put(POLICY, headers=auth[role], json=NEW), 403, "forbidden")
    assert count_rows() == before
    assert client.get(POLICY, headers=auth["admin"]).json["policy"] == DEFAULTS


def test_admin_change_is_stored_audited_and_survives_a_new_app(app, client, auth, app_config, make_app):
    response = client.put(POLICY, headers=auth["admin"], json=NEW)
    assert response.status_code == 200
    body = response.json
    assert body["policy"] == NEW and body["source"] == "database" and body["updated_by"] == "test-admin"
    assert [(c["changed_by"], c["old_value"], c["new_value"]) for c in body["history"]] == [
        ("test-admin", DEFAULTS, NEW)]
    with app.app_context():
        changes = list(db.session.scalars(select(SettingChange)))
        assert [(c.key, c.changed_by, c.old_value, c.new_value) for c in changes] == [
            ("routing_policy", "test-admin", DEFAULTS, NEW)]
        assert changes[0].created_at is not None
    # Another app on the same database (another worker or instance) reads it, once its cache expires.
    policy_service.forget_cached_policy()
    other = make_app(app_config).test_client()
    assert other.get(POLICY, headers=auth["moderator"]).json["policy"] == NEW
    # Storing the same policy again records nothing; a further change records old -> new.
    assert client.put(POLICY, headers=auth["admin"], json=NEW).json["history"][0]["new_value"] == NEW
    third = {**NEW, "audit_rate": 0.1}
    history = client.put(POLICY, headers=auth["admin"], json=third).json["history"]
    assert [(c["old_value"], c["new_value"]) for c in history] == [(NEW, third), (DEFAULTS, NEW)]


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"max_leak", "min_reject_precision", "expected_removal_rate", "audit_rate"}),
    ({**NEW, "max_leak": 0}, {"max_leak"}),
    ({**NEW, "max_leak": 1}, {"max_leak"}),
    ({**NEW, "max_leak": -0.1}, {"max_leak"}),
    ({**NEW, "max_leak": "0.02"}, {"max_leak"}),
    ({**NEW, "max_leak": None}, {"max_leak"}),
    ({**NEW, "max_leak": True}, {"max_leak"}),
    ({**NEW, "min_reject_precision": 0}, {"min_reject_precision"}),
    ({**NEW, "min_reject_precision": 1.01}, {"min_reject_precision"}),
    ({**NEW, "expected_removal_rate": 0}, {"expected_removal_rate"}),
    ({**NEW, "expected_removal_rate": 1}, {"expected_removal_rate"}),
    ({**NEW, "audit_rate": -0.01}, {"audit_rate"}),
    ({**NEW, "audit_rate": 2}, {"audit_rate"}),
    ({**NEW, "audit_rate": [0.1]}, {"audit_rate"}),
    ({key: value for key, value in NEW.items() if key != "audit_rate"}, {"audit_rate"}),
    ({**NEW, "confidence": 0.9}, {"confidence"}),
])
def test_bad_policies_are_refused_and_change_nothing(client, auth, count_rows, body, fields):
    client.put(POLICY, headers=auth["admin"], json=NEW)
    before = count_rows()
    assert_error(client.put(POLICY, headers=auth["admin"], json=body), 422, "validation_failed", fields)
    assert count_rows() == before
    assert client.get(POLICY, headers=auth["admin"]).json["policy"] == NEW


@pytest.mark.parametrize("raw", ["[]", "0.02", "{kaputt"])
def test_non_object_bodies_are_refused(client, auth, count_rows, raw):
    before = count_rows()
    response = client.put(POLICY, headers={**auth["admin"], "Content-Type": "application/json"}, data=raw)
    assert response.status_code in {400, 422} and set(response.json) == {"error"}
    assert count_rows() == before


def test_the_service_refuses_out_of_range_values_itself(app):
    with app.app_context(), pytest.raises(Exception) as refused:
        policy_service.update_policy(db.session, {**NEW, "max_leak": 1.5}, actor="x", config=app.config)
    assert refused.value.fields == {"max_leak": ["Must be above 0 and below 1."]}
    with app.app_context():
        assert db.session.scalar(select(Setting)) is None


def test_manual_thresholds_win_over_the_policy(client, auth):
    """The suite's app sets MODERATION_APPROVE_THRESHOLD / REJECT_THRESHOLD: they stay as they are."""
    body = client.put(POLICY, headers=auth["admin"], json={**NEW, "audit_rate": 0.0}).json
    assert body["thresholds"] == {"approve": 0.35, "reject": 0.65, "approve_source": "manual",
                                  "reject_source": "manual"}
    assert submit(client, auth, text=FRIENDLY[0])["status"] == "approved"


def test_policy_sets_the_thresholds_and_routing_follows_at_once(calibrated, calibrated_auth):
    auth = calibrated_auth
    body = calibrated.get(POLICY, headers=auth["moderator"]).json
    assert body["thresholds"]["approve_source"] == body["thresholds"]["reject_source"] == "calibration"
    assert body["thresholds"]["approve"] == pytest.approx(CALIBRATED_APPROVE[0.02], abs=1e-3)
    expected = body["expected"]
    assert expected["leak_upper"] <= 0.02 and 0.3 < expected["automated_share"] < 0.9
    assert [p["max_leak"] for p in expected["curve"]] == [0.01, 0.02, 0.03, 0.05]
    assert expected["removed_samples"] == 1000 and expected["kept_samples"] == 2000
    friendly = submit(calibrated, auth, text=FRIENDLY[0], author="a1")
    borderline = submit(calibrated, auth, text=BORDERLINE, author="a2")
    assert friendly["status"] == "approved" and borderline["reasons"] == ["toxicity_uncertain"]

    tight = calibrated.put(POLICY, headers=auth["admin"], json={**DEFAULTS, "max_leak": 0.01}).json
    assert tight["thresholds"]["approve"] == CALIBRATED_APPROVE[0.01] and tight["expected"]["approved_share"] == 0
    assert submit(calibrated, auth, text=FRIENDLY[1], author="a3")["reasons"] == ["toxicity_uncertain"]

    loose = calibrated.put(POLICY, headers=auth["admin"], json={**DEFAULTS, "max_leak": 0.05}).json
    assert loose["thresholds"]["approve"] == CALIBRATED_APPROVE[0.05]
    assert submit(calibrated, auth, text=BORDERLINE, author="a4")["status"] == "approved"


def test_a_lower_expected_removal_rate_publishes_more(calibrated, calibrated_auth):
    auth = calibrated_auth["admin"]
    usual = calibrated.put(POLICY, headers=auth, json={**DEFAULTS, "expected_removal_rate": 0.10}).json
    rare = calibrated.put(POLICY, headers=auth, json={**DEFAULTS, "expected_removal_rate": 0.04}).json
    assert rare["thresholds"]["approve"] > usual["thresholds"]["approve"]
    assert rare["expected"]["approved_share"] > usual["expected"]["approved_share"]
    # No decision yet, no retrain: the thresholds are calibrated at the expected rate, and the API says so.
    assert rare["removal_rate"] == {"measured": None, "measured_decisions": 0, "expected": 0.04, "in_use": 0.04,
                                    "in_use_source": "expected"}


def test_other_processes_see_a_change_within_the_cache_time(app, auth, client, monkeypatch):
    """A change written by another process reaches this one when its cached copy expires (CACHE_SECONDS)."""
    clock = [1000.0]
    monkeypatch.setattr(policy_service.time, "monotonic", lambda: clock[0])
    assert client.get(POLICY, headers=auth["moderator"]).json["policy"] == DEFAULTS
    with app.app_context():  # as another worker would: straight to the database, this process's cache untouched
        db.session.add(Setting(key=policy_service.POLICY_KEY, value=NEW, updated_by="elsewhere"))
        db.session.commit()
    assert client.get(POLICY, headers=auth["moderator"]).json["policy"] == DEFAULTS
    clock[0] += policy_service.CACHE_SECONDS + 0.1
    assert client.get(POLICY, headers=auth["moderator"]).json["policy"] == NEW


def test_a_model_with_broken_calibration_data_is_refused(tmp_path, tiny_model_dir, app_config):
    import shutil

    from moderation import create_app
    from moderation.ml import ModelError
    from moderation.ml.model import read_metadata, write_metadata

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    metadata = read_metadata(broken)
    metadata["calibration"] = {"removed": [0.2, "viel"], "kept": [0.1]}
    write_metadata(broken, metadata)
    with pytest.raises(ModelError, match="unreadable calibration data"):
        create_app({**app_config, "MODEL_DIR": str(broken)})
