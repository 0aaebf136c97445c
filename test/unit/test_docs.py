"""Citations of the design notes resolve: every ``docs/<page>.md, "Section"`` the code, configs,
benchmarks and docs cite names an existing page and one of its headings.

Modules cite a section instead of restating the fact (``docs/design.md``); a renamed heading
must not leave them pointing nowhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # test/unit/<this file>
DOCS = REPO / "docs"
SKIPPED_DIRS = {".git", ".venv", "build", "install", "log", "__pycache__", "outputs"}
CITING_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".in", ".sh", ".cfg", ".toml"}
# The pages are lower-case (upstream projects' ``docs/DATA.md`` and the like are not ours); a
# citation is the page, optionally closed by `` or `, an optional comma or "(", then "Section".
PAGE = re.compile(r"(?<![\w/.])docs/([a-z0-9_]+\.md)")
CITATION = re.compile(PAGE.pattern + r'`{0,2}\s*(?:,|\()?\s*\\?"([^"\\]+)\\?"')
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _citing_files():
    this_file = Path(__file__).resolve()
    # os.walk prunes the virtual environment and build trees instead of listing them.
    for folder, subfolders, names in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_DIRS]
        for name in names:
            path = Path(folder) / name
            if path != this_file and (path.suffix in CITING_SUFFIXES or name == "CMakeLists.txt"):
                yield path


def _unwrap(text: str) -> str:
    """Joins lines the way a reader does: a citation may wrap inside a comment or docstring."""
    return re.sub(r"\s*\n\s*(?:#+\s*)?", " ", text)


def _headings() -> dict[str, set[str]]:
    return {page.name: set(HEADING.findall(page.read_text(encoding="utf-8"))) for page in DOCS.glob("*.md")}


def test_cited_sections_exist():
    headings = _headings()
    broken = []
    for path in _citing_files():
        text = _unwrap(path.read_text(encoding="utf-8", errors="replace"))
        for page in PAGE.findall(text):
            if page not in headings:
                broken.append(f"{path.relative_to(REPO)}: docs/{page} does not exist")
        for page, section in CITATION.findall(text):
            if page in headings and section not in headings[page] and section != "Section name":
                broken.append(f"{path.relative_to(REPO)}: docs/{page} has no section {section!r}")
    assert not broken, "broken citations of the design notes:\n" + "\n".join(sorted(set(broken)))


def test_links_between_pages_resolve():
    broken = []
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not (page.parent / target).is_file():
                broken.append(f"docs/{page.name} links to {target}, which does not exist")
    assert not broken, "\n".join(broken)
