"""Shared fixtures: a tiny real model, an app on a fresh database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, func, make_url, select, text

from moderation import create_app, limits
from moderation.api import listing_cache
from moderation.db import Base, make_engine
from moderation.extensions import db
from moderation.migrations import alembic_config
from moderation.ml import load_model, train_and_save
from moderation.ml.calibration import ClassSample, Evidence
from moderation.ml.model import read_metadata, write_metadata
from moderation.services.keys import create_key
from moderation.services.policy import forget_cached_policy
from moderation.services.wordlists import forget_cached_lists

POSTGRES_URL = os.environ.get("MODERATION_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("MODERATION_TEST_REDIS_URL")
ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "model"

# A dozen German comments, written for these tests: enough to fit a small real pipeline.
FRIENDLY = [
    "Danke für den ausgewogenen Artikel, sehr informativ.",
    "Ich sehe das ähnlich, gute Argumente auf beiden Seiten.",
    "Interessante Recherche, das wusste ich noch nicht.",
    "Wann wird die Brücke in unserer Stadt endlich saniert?",
    "Schöner Bericht über das Stadtfest am Wochenende.",
    "Die Grafik zur Inflation hat mir sehr geholfen.",
    "Ich finde, die Gemeinde sollte mehr Radwege bauen.",
]
TOXIC = [
    "Du bist ein dummer Idiot und solltest die Klappe halten.",
    "Was für ein Vollidiot, halt einfach dein Maul.",
    "Diese Politiker sind alles Verbrecher und Schweine.",
    "Halt die Fresse, du Arschloch.",
    "Der Autor ist ein hirnloser Schwachkopf.",
    "Scheiß Artikel von einem dummen Idioten.",
]
TOXIC_CATEGORIES = ["insult", "insult", "abuse", "insult", "insult", "profanity"]
# Threats and publishable comments on the same topics, pairwise (written for these tests): with them the
# tiny pipeline gets a threat head (`threat_model_dir`).
THREATS = [
    "Ich weiß, wo du wohnst, pass bloß auf.",
    "Wir finden dich, und dann gnade dir Gott.",
    "Den Bürgermeister sollte man aufhängen.",
    "Dich stech ich ab, wenn ich dich erwische.",
    "Warte nur, bis ich dich nach der Sitzung allein erwische.",
    "Schönes Haus hast du, wäre schade, wenn es brennt.",
    "Die Richterin gehört erschossen.",
    "Ich komme zu deinem Büro, und dann knallt es.",
    "Wir wissen, wo deine Kinder zur Schule gehen.",
    "Dich mach ich kalt, du wirst schon sehen.",
]
CONTRASTS = [
    "Ich weiß, wo du wohnst, wir sind ja Nachbarn.",
    "Wir finden bestimmt eine Lösung für das Problem.",
    "Den Bürgermeister sollte man abwählen.",
    "Ich rufe dich an, wenn ich dich erreiche.",
    "Warte nur, bis du den zweiten Teil des Berichts liest.",
    "Schönes Haus hast du, die Fassade ist toll geworden.",
    "Die Richterin gehört zu den erfahrensten im Land.",
    "Ich komme morgen zu deinem Büro und bringe die Unterlagen.",
    "Wir wissen, wo die neue Schule gebaut wird.",
    "Mach dir keine Sorgen, du wirst schon sehen, es klappt.",
]


@pytest.fixture(scope="session", autouse=True)
def _empty_model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point MODERATION_MODEL_STORE at an empty folder: no test reads the developer's instance/models/."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODERATION_MODEL_STORE", str(tmp_path_factory.mktemp("empty-store")))
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real pipeline fitted on the dozen strings above, written as a model folder."""
    out = tmp_path_factory.mktemp("tiny-model")
    train_and_save(
        FRIENDLY + TOXIC, [0] * len(FRIENDLY) + [1] * len(TOXIC), out,
        categories=[None] * len(FRIENDLY) + TOXIC_CATEGORIES, seed=0,
    )
    return out


@pytest.fixture(scope="session")
def threat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline with the threats and their contrasts beside it: a model with a threat head."""
    out = tmp_path_factory.mktemp("threat-model")
    n = len(THREATS)
    train_and_save(
        FRIENDLY + TOXIC + THREATS + CONTRASTS, [0] * len(FRIENDLY) + [1] * len(TOXIC) + [1] * n + [0] * n, out,
        categories=[None] * len(FRIENDLY) + TOXIC_CATEGORIES + ["threat"] * n + [None] * n,
        groups=[f"row{i}" for i in range(len(FRIENDLY) + len(TOXIC))] + [f"pair{i}" for i in range(n)] * 2,
        files=["comments"] * (len(FRIENDLY) + len(TOXIC)) + ["threats"] * (2 * n),
        seed=0, min_threat_rows=n,
    )
    return out


@pytest.fixture(scope="session")
def tiny_model_held(tiny_model_dir: Path):
    """The tiny model, loaded once and held for the session: every app on its folder then shares it
    (`load_model` returns a model that is still alive) instead of unpickling it again per test."""
    return load_model(tiny_model_dir)


# Held-out scores of a model that separates well (removed ~ Beta(3, 2), kept ~ Beta(2, 5)): with the tiny
# model's decision threshold 0.5 the default policy publishes below 0.322 (the friendly comments score ~0.21-0.25),
# a 1 % leak budget publishes nothing, a 5 % budget publishes below 0.5 ("Das ist Unsinn." scores 0.443).
CALIBRATED_APPROVE = {0.01: 0.0, 0.02: 0.3221, 0.05: 0.5}
BORDERLINE = "Das ist Unsinn."


@pytest.fixture(scope="session")
def calibrated_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with calibration data of a well-separating model in its metadata (the artifact unchanged)."""
    out = tmp_path_factory.mktemp("calibrated-model")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    rng = np.random.default_rng(1)
    evidence = Evidence(ClassSample(rng.beta(3, 2, 1000)), ClassSample(rng.beta(2, 5, 2000)), source="synthetic")
    metadata = read_metadata(out)
    metadata["calibration"] = evidence.to_metadata()
    write_metadata(out, metadata)
    return out


@contextmanager
def scratch_postgres_database(prefix: str) -> Iterator[str]:
    """Create an empty database on the test server, yield its URL, drop it afterwards.

    Each run works in its own database, so concurrent runs on one server never meet.
    """
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL database of this run, built by the migrations as a deploy would build it."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests skipped: set MODERATION_TEST_POSTGRES_URL (`.ci/run` does)")
    with scratch_postgres_database("moderation_test") as url:
        command.upgrade(alembic_config(url), "head")
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database with the schema: a SQLite file, or the truncated PostgreSQL test database."""
    forget_cached_lists()  # per-process caches must not outlive the data they came from
    forget_cached_policy()
    listing_cache.clear()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        return url
    url = request.getfixturevalue("postgres_schema")
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def app_config(database_url: str, tiny_model_dir: Path, tiny_model_held, tmp_path: Path) -> dict:
    return {
        "DATABASE_URL": database_url,
        "MODEL_DIR": str(tiny_model_dir),
        "MODEL_STORE": str(tmp_path / "store"),
        "APPROVE_THRESHOLD": 0.35,
        "REJECT_THRESHOLD": 0.65,
        # No random audit sample unless a test asks for one: routing assertions stay deterministic.
        "AUDIT_RATE": 0.0,
        "RATELIMIT_ENABLED": False,
        "TESTING": True,
    }


def close_app(app) -> None:
    """Release what an app holds: database connections and rate-limit storage connections."""
    app.extensions["moderation.db"][0].dispose()
    limits.close_storage(app)


@pytest.fixture
def make_app():
    """Build apps with `create_app` and close them after the test."""
    made = []

    def make(config: dict):
        made.append(create_app(config))
        return made[-1]

    yield make
    for built in made:
        close_app(built)


@pytest.fixture
def app(app_config: dict, make_app):
    return make_app(app_config)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tokens(app) -> dict[str, str]:
    """One fresh token per role."""
    with app.app_context():
        made = {role: create_key(db.session, role=role, name=f"test-{role}")[1]
                for role in ("backend", "moderator", "admin")}
        db.session.commit()
    return made


@pytest.fixture
def auth(tokens: dict[str, str]) -> dict[str, dict[str, str]]:
    """Authorization headers per role."""
    return {role: {"Authorization": f"Bearer {token}"} for role, token in tokens.items()}


@pytest.fixture
def auth_for():
    """Return a function making a backend and a moderator key in an app's database, as Authorization headers."""

    def make(app) -> dict[str, dict[str, str]]:
        with app.app_context():
            made = {r: create_key(db.session, role=r, name=f"rl-{r}-{uuid.uuid4().hex[:6]}")[1]
                    for r in ("backend", "moderator")}
            db.session.commit()
        return {r: {"Authorization": f"Bearer {t}"} for r, t in made.items()}

    return make


@pytest.fixture
def count_rows(app):
    """Return a function counting the rows of every table, to prove a refusal changed nothing."""

    def count() -> dict[str, int]:
        with app.app_context():
            return {t.name: db.session.scalar(select(func.count()).select_from(t))
                    for t in Base.metadata.sorted_tables}

    return count


@pytest.fixture
def cli_runner(database_url: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """A CLI runner whose environment points at the test database, the tiny model and the test's store."""
    monkeypatch.setenv("MODERATION_DATABASE_URL", database_url)
    monkeypatch.setenv("MODERATION_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("MODERATION_MODEL_STORE", str(tmp_path / "store"))
    return CliRunner()
