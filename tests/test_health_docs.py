"""Health endpoints and the OpenAPI document."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from moderation.ml.registry import ModelStore
from moderation.web.security import CONTENT_SECURITY_POLICY


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


# --- /docs: Swagger UI from our own routes, under the pages' Content-Security-Policy ----------------------------------

ASSET = re.compile(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]*)"')
SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S)


def fetch(client, url: str, **kwargs):
    """GET `url` and read the whole body, closing the file a static response streams from."""
    response = client.get(url, **kwargs)
    response.get_data()
    response.close()
    return response


def test_docs_page_loads_only_our_own_files_under_the_pages_policy(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    page = response.text
    # The policy allows no inline script or style: every script is a file, and nothing is styled in place.
    scripts = SCRIPT.findall(page)
    assert len(scripts) >= 2
    assert all(re.search(r'\bsrc="/', attrs) and not body.strip() for attrs, body in scripts), scripts
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"<[^>]+\son[a-z]+=", page)
    assets = ASSET.findall(page)
    assert {url.rsplit("/", 1)[1] for url in assets} >= {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-init.js"}
    types = {}
    for url in assets:
        assert url.startswith("/docs/") and "//" not in url, f"{url} is not one of our own files"
        asset = fetch(client, url)
        assert asset.status_code == 200, url
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert asset.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        types[url.rsplit(".", 1)[1]] = asset.mimetype
    assert types["js"] in {"text/javascript", "application/javascript"} and types["css"] == "text/css"
    # The initializer (a file) points Swagger UI at our document and never at the public validator.
    assert 'data-spec-url="/openapi.json"' in page
    init = next(url for url in assets if url.endswith("swagger-init.js"))
    assert "validatorUrl: null" in fetch(client, init).text


def test_swagger_ui_files_are_the_packaged_ones(client):
    from moderation.web.docs import SWAGGER_UI_DIST

    bundle = fetch(client, "/docs/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert bundle.data == (SWAGGER_UI_DIST / "swagger-ui-bundle.js").read_bytes()
    assert (SWAGGER_UI_DIST / "VERSION").read_text().startswith("v5.")


@pytest.mark.parametrize("path", [
    "/docs/swagger-ui/../flask_swagger_ui.py",
    "/docs/swagger-ui/%2e%2e/flask_swagger_ui.py",
    "/docs/swagger-ui/..%2fflask_swagger_ui.py",
    "/docs/swagger-ui/../../../../../../etc/passwd",
    "/docs/swagger-ui/%2fetc%2fpasswd",
    "/docs/swagger-ui/no-such-file.js",
    "/docs/swagger-ui/",
    "/docs/static/../docs.py",
    "/docs/static/%2e%2e/docs.py",
    "/docs/static/no-such-file.js",
])
def test_docs_files_outside_the_two_folders_are_404(client, path):
    response = fetch(client, path, follow_redirects=True)  # a doubled slash is merged by a redirect first
    assert response.status_code == 404, path
    assert b"import" not in response.data and b"root:" not in response.data


# --- the model: problems are reported by /readyz without internals; /healthz stays up ---

@pytest.fixture
def model_root(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A model store whose CURRENT names a copy of the tiny model (the shipped model)."""
    store = ModelStore(tmp_path / "modelle", tiny_model_dir)
    store.promote(store.shipped_version(), reason="test")
    return store.root


@pytest.fixture
def polling_app(app_config, make_app, model_root):
    """An app on the store `model_root` that looks at CURRENT on every request."""
    return make_app({**app_config, "MODEL_STORE": str(model_root), "MODEL_RELOAD_SECONDS": 1e-9})


def logged(caplog, event: str, detail: str) -> bool:
    """Whether `event` was logged with `detail` in its error or detail."""
    return any(r.getMessage() == event and detail in getattr(r, "error", "") + getattr(r, "detail", "")
               for r in caplog.records)


def break_by_directory(pointer: Path) -> None:
    pointer.unlink()
    pointer.mkdir()


def break_by_symlink_loop(pointer: Path) -> None:
    pointer.unlink()
    pointer.symlink_to(pointer.name)


def break_by_bytes(pointer: Path) -> None:
    pointer.write_bytes(b"\xff\xfe kaputt\n")


def break_by_permissions(pointer: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    pointer.chmod(0)


def restore(pointer: Path, version: str) -> None:
    if pointer.is_dir() and not pointer.is_symlink():
        pointer.rmdir()
    else:
        pointer.unlink()
    pointer.write_text(version + "\n")


@pytest.mark.parametrize("breakage", [break_by_directory, break_by_symlink_loop, break_by_bytes, break_by_permissions],
                         ids=["directory", "symlink loop", "not UTF-8", "no permission"])
def test_an_unreadable_current_keeps_the_process_alive_and_readyz_reports_it(polling_app, model_root, auth, breakage,
                                                                            caplog):
    client = polling_app.test_client()
    pointer = model_root / "CURRENT"
    version = pointer.read_text().strip()
    breakage(pointer)
    try:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["model_version"] == version  # the old model serves
        assert "CURRENT" in ready.json["model_error"] and str(model_root) not in ready.json["model_error"]
        scored = client.post("/v1/score", json={"text": "Danke!"}, headers=auth["backend"])
        assert scored.status_code == 200 and scored.json["model_version"] == version
        assert logged(caplog, "model_pointer_unreadable", str(model_root))  # the details are in the log
    finally:
        restore(pointer, version)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "model_error" not in ready.json


def refuse(root: Path, name: str, damage) -> None:
    """Store version `name` as a copy of the serving one, damaged by `damage`, and point CURRENT at it."""
    serving = root / "versions" / (root / "CURRENT").read_text().strip()
    target = root / "versions" / name
    shutil.copytree(serving, target)
    meta = json.loads((target / "metadata.json").read_text())
    meta["version"] = name
    (target / "metadata.json").write_text(json.dumps(meta))
    damage(target)
    (root / "CURRENT").write_text(name + "\n")


@pytest.mark.parametrize(("name", "damage", "said"), [
    ("kaputt", lambda d: (d / "model.joblib").write_bytes((d / "model.joblib").read_bytes() + b"!"), "SHA-256"),
    ("ohne-datei", lambda d: (d / "model.joblib").unlink(), "artifact is missing"),
    ("ohne-metadaten", lambda d: (d / "metadata.json").unlink(), "metadata.json is missing"),
    ("../../etc", lambda d: None, "invalid"),
])
def test_a_refused_version_is_reported_without_paths_or_hashes(polling_app, model_root, name, damage, said, caplog):
    client = polling_app.test_client()
    serving = (model_root / "CURRENT").read_text().strip()
    if name.startswith(".."):
        (model_root / "CURRENT").write_text(name + "\n")
    else:
        refuse(model_root, name, damage)
    polling_app.extensions["moderation.classifier"].reload_now()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["model_version"] == serving
    error = ready.json["model_error"]
    assert said in error and "/" not in error.replace(name, "") and not re.search(r"[0-9a-f]{16}", error)
    assert ("refused model version " + name) in error if not name.startswith("..") else "named in CURRENT" in error
    assert logged(caplog, "model_reload_refused", str(model_root))  # the details are in the log
