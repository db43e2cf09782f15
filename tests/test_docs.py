"""The documentation: README.md (what the suite is, the two commands, a tour,
the layout) and docs/*.md (the rest). Its links resolve, every doc is reachable,
the README's commands are the Makefile's and CI's, and the reference pages
name every setting and every RPC. The curl tour is run by
tests/gateway/test_http.py, the webhook `verify` snippet by tests/notifier, and
the generated tables are checked fresh by tests/test_contracts.py."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from automl.common.settings import Settings
from tests.conftest import ROOT

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^ *```.*?^ *```", re.S | re.M)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:...


def prose(text: str) -> str:
    """Markdown without its code blocks and code spans (their brackets are no links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def links(text: str) -> list[str]:
    body = prose(text)
    return INLINE_LINK.findall(body) + REFERENCE_LINK.findall(body)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", FENCE.sub("", path.read_text()), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page.read_text()):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    return broken


# ------------------------------------------------------------------ links


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_can_fail(tmp_path):
    (tmp_path / "there.md").write_text("# Some heading\n\n## `code` and (more)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#some-heading) [ok](there.md#code-and-more) [ok](#mine)\n"
        "[gone](missing.md) [bad anchor](there.md#nope) [web](https://example.com/x)\n"
        "`[not a link](nowhere.md)`\n\n```sh\n[neither](nowhere.md)\n```\n\n## Mine\n\n[ref]: ../nowhere/either.md\n"
    )
    assert [b.split(" ")[0] for b in broken_links(page)] == ["missing.md", "there.md#nope", "../nowhere/either.md"]


def test_every_doc_is_reachable_from_the_readme():
    readme = links((ROOT / "README.md").read_text())
    assert "docs/index.md" in readme, "README.md must link docs/index.md"
    index = {target.partition("#")[0] for target in links((DOCS / "index.md").read_text())}
    unlisted = [p.name for p in DOCS.glob("*.md") if p.name != "index.md" and p.name not in index]
    assert unlisted == [], f"docs/index.md does not link {unlisted}"


# --------------------------------------------------------------- README


def test_the_readme_shows_the_two_commands_the_makefile_and_ci_run():
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Two commands\n\n```sh\n(.*?)```", readme, re.S | re.M)
    assert section, "README.md: the `## Two commands` section must open with its sh block"
    commands = [line.split("#")[0].strip() for line in section.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    assert {"demo", "test"} <= targets
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test", ".ci/run must end with the README's test command"


def test_the_readme_stays_short():
    """The reference lives in docs/: the README is the front page."""
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines < 250, f"README.md has {lines} lines: move reference material to docs/"
    for marker in ("settings:begin", "api:begin"):
        assert marker not in (ROOT / "README.md").read_text()


# ------------------------------------------------------------ reference


def test_every_setting_is_in_the_configuration_page():
    page = (DOCS / "configuration.md").read_text()
    missing = [f.metadata["env"] for f in dataclasses.fields(Settings) if f"| `{f.metadata['env']}` |" not in page]
    assert missing == [], f"docs/configuration.md lacks {missing}: run `make docs`"


def test_every_rpc_is_in_the_api_page():
    from automl.v1 import automl_service_pb2, notifier_service_pb2, runner_service_pb2, storage_service_pb2

    page = (DOCS / "api.md").read_text()
    for module in (automl_service_pb2, notifier_service_pb2, runner_service_pb2, storage_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            heading = f"#### `{service.full_name}` ({module.DESCRIPTOR.name})"
            assert heading in page, f"docs/api.md lacks {heading}: run `make docs`"
            table = page.split(heading, 1)[1].split("\n#### ", 1)[0]
            missing = [m.name for m in service.methods if f"| `{m.name}` |" not in table]
            assert missing == [], f"docs/api.md: {service.full_name} lacks {missing}: run `make docs`"


def test_gen_docs_rewrites_a_stale_table():
    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_docs

    for name, (path, _) in gen_docs.SECTIONS.items():
        current = path.read_text()
        assert gen_docs.render(current, [name]) == current
        stale = re.sub(rf"(<!-- {name}:begin.*?-->\n)", r"\1| stale | row |\n", current, flags=re.S)
        assert gen_docs.render(stale, [name]) == current
