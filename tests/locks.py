"""Read the dependency files: the hashed locks (requirements*.txt) and the lists they are compiled from (*.in)."""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.servers import ROOT

# Each lock and the list it is compiled from (`make lock`): runtime, then training on top, then tests on top.
LOCKS = {"requirements.txt": "requirements.in", "requirements-train.txt": "requirements-train.in",
         "requirements-dev.txt": "requirements-dev.in"}
HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


def lock_entries(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Return package -> (pinned version, hashes) for every requirement of the lock `name`; assert its form."""
    entries = {}
    for line in (ROOT / name).read_text().replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert not line.startswith("-"), f"{name}: option line {line!r} (a lock names packages only)"
        requirement = Requirement(line.split(" --hash=")[0].strip())
        assert requirement.url is None, f"{name}: {requirement.name} comes from a URL"
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}: {requirement.name} is not pinned"
        hashes = frozenset(HASH.findall(line))
        assert hashes, f"{name}: {requirement.name} has no hash"
        entries[canonicalize_name(requirement.name)] = (spec.version, hashes)
    return entries


def in_requirements(name: str) -> list[Requirement]:
    """Return the requirements of a .in file, following its `-r` includes."""
    requirements = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            requirements += in_requirements(line[3:].strip())
        elif line and not line.startswith("#"):
            assert not line.startswith("-"), f"{name}: unexpected option {line!r}"
            requirements.append(Requirement(line))
    return requirements
