"""The documentation holds: every relative link and anchor resolves, every page is reachable from the README,
the CLI reference names every command, and the README's walk-through runs as written on any PORT."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from moderation.cli import cli
from tests.conftest import ROOT, SHIPPED_MODEL
from tests.servers import free_port, running, service_env

DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.rglob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, …


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where a bracket is not a link."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """Return the anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading counts by its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Return the anchors of a Markdown page's headings, with GitHub's -1, -2 for repeated ones."""
    seen: dict[str, int] = {}
    result = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(page: Path) -> list[str]:
    """Return the targets of the page's links that point into the repository."""
    targets = _LINK.findall(_prose(page.read_text(encoding="utf-8")))
    return [t for t in targets if not _EXTERNAL.match(t)]


def broken_links(page: Path) -> list[str]:
    """Return each relative link of `page` whose file or heading does not exist, with the reason."""
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved
            broken.append(f"{target}: no file {shown}")
        elif not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif anchor:
            if resolved.suffix != ".md":
                broken.append(f"{target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(resolved):
                broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    return broken


# --- the checker itself -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("heading", "anchor"), [
    ("A first walk-through", "a-first-walk-through"),
    ("Retries: `Idempotency-Key`", "retries-idempotency-key"),
    ("*Stichprobe*: the audit sample", "stichprobe-the-audit-sample"),
    ("Several instances: PostgreSQL and Redis", "several-instances-postgresql-and-redis"),
    ("Backups and restore", "backups-and-restore"),
    ("Coral: external moderation phase", "coral-external-moderation-phase"),
    ("Über die Prüfung", "über-die-prüfung"),
])
def test_slug_is_githubs(heading, anchor):
    assert slug(heading) == anchor


def test_checker_finds_missing_files_and_headings(tmp_path, monkeypatch):
    monkeypatch.setattr("tests.test_docs.ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Title\n\n## Second part\n\n## Second part\n", encoding="utf-8")
    (tmp_path / "data.txt").write_text("x", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Here\n"
        "[ok](other.md) [ok](other.md#second-part) [ok](other.md#second-part-1) [ok](#here) [ok](data.txt)\n"
        "[web](https://example.org/missing) `[not a link](nowhere.md)`\n"
        "```sh\n[not a link either](nowhere.md)\n```\n"
        "[gone](missing.md) [no heading](other.md#third) [no anchor here](#there) [txt anchor](data.txt#x)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md: no file missing.md",
        "other.md#third: no heading #third in other.md",
        "#there: no heading #there in page.md",
        "data.txt#x: an anchor into a file that is not Markdown",
    ]


# --- the documentation ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_every_page_is_reachable_from_the_readme():
    reached, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for target in relative_links(page):
            linked = (page.parent / target.partition("#")[0]).resolve()
            if linked.suffix == ".md" and linked.is_file():
                todo.append(linked)
    assert [str(p.relative_to(ROOT)) for p in PAGES if p not in reached] == []


def test_readme_is_a_guide_not_a_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 400
    assert not re.search(r"\b(I|we|my|our)\b", _prose(readme)), "the README speaks to the reader, not of its authors"
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", readme), "dated measurements belong in docs/, not the README"


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        if getattr(command, "hidden", False):
            continue
        path = f"{prefix}{name}"
        names.extend(_commands(command, path + " ") if isinstance(command, click.Group) else [path])
    return names


def test_cli_reference_names_every_command():
    reference = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = _commands(cli)
    assert "models promote" in commands and "train" in commands
    assert [c for c in commands if f"`{c}" not in reference] == []


# --- the README's walk-through, run as written ------------------------------------------------------------------------

def walkthrough() -> tuple[list[str], str]:
    """Return the README walk-through's shell blocks and the rest of its text."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## A first walk-through\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S)
    return blocks, section


def test_walkthrough_urls_follow_port_and_show_errors():
    blocks, _ = walkthrough()
    lines = [line for block in blocks for line in block.splitlines()]
    urls = [line for line in lines if "127.0.0.1" in line or "localhost" in line]
    assert urls and all(re.search(r"(127\.0\.0\.1|localhost):\$\{PORT:-8000\}/", line) for line in urls), urls
    curls = [line for line in lines if line.lstrip().startswith("curl ")]
    assert curls and all("--fail-with-body" in line for line in curls), curls


def _curl_fails_with_body() -> bool:
    curl = shutil.which("curl")
    if curl is None:
        return False
    return "--fail-with-body" in subprocess.run([curl, "--help", "all"], capture_output=True, text=True).stdout


def json_values(output: str) -> list:
    """Return the JSON values printed one after the other (not every answer ends with a newline)."""
    decoder, values, position = json.JSONDecoder(), [], 0
    while (start := output.find("{", position)) >= 0:
        value, position = decoder.raw_decode(output, start)
        values.append(value)
    return values


@pytest.mark.slow
@pytest.mark.skipif(not _curl_fails_with_body(), reason="needs curl 7.76 or later (--fail-with-body)")
@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="the walk-through uses .venv/bin/python")
def test_readme_walkthrough_runs_as_written_on_another_port(tmp_path):
    blocks, section = walkthrough()
    port = free_port()
    env = service_env(PORT=str(port), MODERATION_DATABASE_URL=f"sqlite:///{tmp_path / 'walkthrough.db'}",
                      MODERATION_MODEL_DIR=str(SHIPPED_MODEL), SERVER_LOG=str(tmp_path / "server.log"))
    with running(["./boot.sh"], env, f"http://127.0.0.1:{port}/readyz"):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(blocks)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json_values(done.stdout)
    submitted: dict[int, dict] = {}
    for answer in answers:  # the first answer about a comment is its submission's (the decision comes later)
        if "status" in answer and "author_id" in answer:
            submitted.setdefault(answer["id"], answer)
    # What the README says each submission got: status, reasons and score as shown there.
    shown = re.findall(r'^\{"id":(\d+), "status":"(\w+)", "reasons":(\[[^\]]*\]), "toxicity":([\d.]+)', section, re.M)
    assert len(shown) == 2
    for comment_id, status, reasons, toxicity in shown:
        answer = submitted[int(comment_id)]
        assert (answer["status"], answer["reasons"]) == (status, json.loads(reasons)), answer
        assert round(answer["toxicity"], 3) == round(float(toxicity), 3), answer
    public = {"id", "parent_id", "author_name", "text", "created_at"}  # the queue's pages carry much more
    listings = [a for a in answers if "comments" in a and all(set(c) == public for c in a["comments"])]
    assert [listing["total"] for listing in listings] == [0, 1]
    assert listings[-1]["comments"][0]["author_name"] == "Anna"
