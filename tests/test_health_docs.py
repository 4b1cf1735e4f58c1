"""Health endpoints and the OpenAPI document."""

from __future__ import annotations

from openapi_spec_validator import validate


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_names_model_version(app, client):
    body = client.get("/readyz").json
    assert body["status"] == "ready" and body["database"] == "ok"
    assert body["model_version"] == app.extensions["moderation.classifier"].serving.model.version


def test_readyz_is_503_when_database_is_gone(tiny_model_dir, tmp_path, make_app):
    missing = tmp_path / "no-such-dir" / "x.db"
    app = make_app({"DATABASE_URL": f"sqlite:///{missing}", "MODEL_DIR": str(tiny_model_dir)})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "not_ready"
    assert response.json["database"].startswith("unreachable")


def test_openapi_document_is_valid_and_complete(client):
    spec = client.get("/openapi.json").json
    validate(spec)
    paths = spec["paths"]
    assert {"/v1/articles/{article_id}/comments", "/v1/comments/{comment_id}", "/v1/score",
            "/healthz", "/readyz"} <= set(paths)
    post = paths["/v1/articles/{article_id}/comments"]["post"]
    assert post["summary"].startswith("Submit a reader comment")
    assert post["security"] == [{"bearerAuth": []}]
    assert {"201", "401", "403", "422"} <= set(post["responses"])
    assert set(spec["components"]["schemas"]["CommentIn"]["properties"]) == {
        "author_id", "author_name", "text", "parent_id", "article_title", "article_url"}
    assert "security" not in paths["/v1/articles/{article_id}/comments"]["get"]


def test_docs_page_is_served(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert b"swagger" in response.data.lower()
