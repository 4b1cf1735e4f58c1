"""Hot reload from the model store: a promotion or rollback switches every worker with no failed request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from moderation.ml import train_and_save
from moderation.ml.registry import POINTER, ModelStore, history, read_pointer
from tests.conftest import FRIENDLY, TOXIC
from tests.servers import ROOT, free_port, running, service_env


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another small model, trained on two more comments than the tiny one."""
    extra = ["Schöner Artikel, danke!", "Du Vollpfosten, halt den Mund."]
    folder = tmp_path_factory.mktemp("second-model")
    train_and_save(FRIENDLY + TOXIC + extra, [0] * len(FRIENDLY) + [1] * len(TOXIC) + [0, 1], folder, seed=1)
    return folder


@pytest.fixture
def two_versions(tmp_path: Path, tiny_model_dir: Path, second_model: Path) -> tuple[ModelStore, str, str]:
    """The tiny model as shipped model (v1, serving: the store names no version) and v2 in the store."""
    store = ModelStore(tmp_path / "store", tiny_model_dir)
    second = store.add(second_model)
    first = store.shipped_version()
    assert second != first and read_pointer(store.root) is None
    return store, first, second


def test_the_store_serves_over_the_shipped_model_and_reloads_what_it_names(two_versions, make_app, app_config):
    """In one process: the shipped model while the store is empty, then each version the store names."""
    store, first, second = two_versions
    app = make_app({**app_config, "MODEL_DIR": str(store.shipped), "MODEL_STORE": str(store.root)})
    holder = app.extensions["moderation.classifier"]
    client = app.test_client()
    assert holder.serving.model.version == first and client.get("/readyz").json["model_version"] == first
    store.promote(second, reason="test")
    holder.reload_now()
    assert holder.serving.model.version == second and client.get("/readyz").json["model_version"] == second
    store.rollback()
    holder.reload_now()
    assert holder.serving.model.version == first and holder.serving.model.path == store.version_dir(first)
    again = make_app({**app_config, "MODEL_DIR": str(store.shipped), "MODEL_STORE": str(store.root)})
    assert again.extensions["moderation.classifier"].serving.model.path == store.version_dir(first)  # at start too


def start(tmp_path: Path, store: ModelStore, workers: int, threads: int):
    port = free_port()
    env = service_env(PORT=str(port), MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'reload.db'}",
                      MODERATION_MODEL_DIR=str(store.shipped), MODERATION_MODEL_STORE=str(store.root),
                      MODERATION_MODEL_RELOAD_SECONDS="0.5",
                      MODERATION_RATELIMIT_ENABLED="0", WEB_CONCURRENCY=str(workers), GUNICORN_THREADS=str(threads),
                      MODERATION_APPROVE_THRESHOLD="0.35", MODERATION_REJECT_THRESHOLD="0.65",
                      SERVER_LOG=str(tmp_path / "server.log"))
    return port, env


def key(env) -> dict[str, str]:
    token = subprocess.run([sys.executable, "-m", "moderation", "keys", "create", "--role", "backend", "--name",
                            f"k{time.monotonic_ns()}"], cwd=ROOT, env=env, capture_output=True, text=True,
                           check=True).stdout.strip()
    return {"Authorization": f"Bearer {token}"}


class Load:
    """Threads that keep submitting comments and record (comment id, model version) or the failure."""

    def __init__(self, base: str, headers: dict[str, str], threads: int) -> None:
        self.base, self.headers = base, headers
        self.answers: list[tuple[int, str]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, worker: int) -> None:
        for i in range(2000):  # bounded
            if self.stop.is_set():
                return
            try:
                response = requests.post(f"{self.base}/v1/articles/last/comments", headers=self.headers, timeout=10,
                                         json={"author_id": f"t{worker}-{i}", "author_name": "L",
                                               "text": f"{FRIENDLY[i % len(FRIENDLY)]} ({worker}/{i})"})
                with self.lock:
                    if response.status_code == 201:
                        self.answers.append((response.json()["id"], response.json()["model_version"]))
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                with self.lock:
                    self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def wait_for(self, condition, timeout: float = 60, describe=lambda: "") -> None:
        # Each check is asked once: a condition that asks a server may hit another worker the next time.
        deadline = time.monotonic() + timeout
        met = condition()
        while not met and time.monotonic() < deadline:
            time.sleep(0.1)
            met = condition()
        last = [v for _, v in self.answers[-8:]]
        assert met, (f"condition not reached in time; {len(self.answers)} answers, last versions {last}, "
                     f"failures {self.failures[-3:]}; {describe()}")


def models(env, store: ModelStore, *args: str) -> None:
    """Run `python -m moderation models ARGS --store STORE`, as an operator would."""
    subprocess.run([sys.executable, "-m", "moderation", "models", *args, "--store", str(store.root)],
                   cwd=ROOT, env=env, capture_output=True, text=True, check=True)


@pytest.mark.slow
def test_promotion_switches_once_under_load_with_no_failed_request(two_versions, tmp_path):
    store, first, second = two_versions
    # One worker with one thread handles requests one at a time, so comment ids order the answers as served.
    port, env = start(tmp_path, store, workers=1, threads=1)
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz"):
        with Load(base, key(env), threads=4) as load:
            load.wait_for(lambda: len(load.answers) >= 40)
            models(env, store, "promote", second)
            load.wait_for(lambda: sum(v == second for _, v in load.answers) >= 60)
        assert requests.get(f"{base}/readyz", timeout=5).json()["model_version"] == second
    assert load.failures == []
    versions = [v for _, v in sorted(load.answers)]
    switches = sum(a != b for a, b in zip(versions, versions[1:], strict=False))
    assert versions[0] == first and versions[-1] == second and switches == 1


@pytest.mark.slow
def test_threaded_workers_switch_with_no_failed_request(two_versions, tmp_path):
    # gunicorn.conf.py's default: each worker runs requests in 8 threads, which the reload must not disturb.
    store, first, second = two_versions
    port, env = start(tmp_path, store, workers=2, threads=8)
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz"):
        with Load(base, key(env), threads=8) as load:
            load.wait_for(lambda: len(load.answers) >= 40)
            models(env, store, "promote", second)
            load.wait_for(lambda: len(load.answers) > 80 and all(v == second for _, v in load.answers[-40:]))
    assert load.failures == []
    assert {v for _, v in load.answers} == {first, second}


@pytest.mark.slow
def test_every_worker_follows_promote_and_rollback_and_a_broken_version_is_refused(two_versions, tmp_path):
    store, first, second = two_versions
    port, env = start(tmp_path, store, workers=2, threads=1)
    base = f"http://127.0.0.1:{port}"
    with running(["./boot.sh"], env, f"{base}/readyz"):
        with Load(base, key(env), threads=4) as load:
            load.wait_for(lambda: len(load.answers) >= 20)
            assert {v for _, v in load.answers} == {first}  # the shipped model, from an empty store
            models(env, store, "promote", second)
            # Both workers have switched once 40 answers in a row come from the new version.
            load.wait_for(lambda: len(load.answers) > 40 and all(v == second for _, v in load.answers[-40:]))
            count = len(load.answers)
            models(env, store, "rollback")
            load.wait_for(lambda: len(load.answers) > count + 40 and all(v == first for _, v in load.answers[-40:]))
            assert [(h["previous"], h["version"]) for h in history(store.root)] == [(first, second), (second, first)]

            # A version whose artifact was tampered with, made current behind the CLI's back.
            broken = store.root / "versions" / "kaputt"
            broken.mkdir()
            meta = json.loads((store.version_dir(first) / "metadata.json").read_text())
            meta["version"] = "kaputt"
            (broken / "metadata.json").write_text(json.dumps(meta))
            (broken / "model.joblib").write_bytes((store.version_dir(first) / "model.joblib").read_bytes() + b"!")
            (store.root / "next").write_text("kaputt\n")
            os.replace(store.root / "next", store.root / POINTER)
            seen: list[str] = []

            def refused_everywhere() -> bool:
                # Each worker refuses on its own poll; ten answers in a row with the error means both have.
                answer = requests.get(f"{base}/readyz", timeout=5)
                seen.append(f"{answer.status_code} {answer.text[:300]}")
                return len(seen) >= 10 and all("model_error" in body for body in seen[-10:])

            def context() -> str:
                log = [line for line in (tmp_path / "server.log").read_text().splitlines() if "model_" in line]
                return f"readyz answered {seen[-3:]}; server log: {log[-6:]}"

            load.wait_for(refused_everywhere, describe=context)
            count = len(load.answers)
            load.wait_for(lambda: len(load.answers) >= count + 40)
        ready = requests.get(f"{base}/readyz", timeout=5)
    assert load.failures == []
    assert ready.status_code == 200 and ready.json()["model_version"] == first
    assert "SHA-256" in ready.json()["model_error"] and "kaputt" in ready.json()["model_error"]
    assert {v for _, v in load.answers[-40:]} == {first}
    assert read_pointer(store.root) == "kaputt"
    log = (tmp_path / "server.log").read_text()
    assert log.count("model_reload_refused") >= 2  # one refusal per worker
