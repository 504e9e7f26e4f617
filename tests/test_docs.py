"""The documentation the code cites lives in the repository, and every citation resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
THEORY = ROOT / "docs" / "theory.md"
#: `docs/theory.md §8.3` or a range `§8.3-8.4`, followed by more `§N` in the same phrase.
CITATION = re.compile(r"docs/theory\.md((?:[ ,;]*(?:and|or)?\s*§\s?\d+(?:\.\d+)*(?:\s?[-–]\s?\d+(?:\.\d+)*)?)+)")
SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)(?:\s?[-–]\s?(\d+(?:\.\d+)*))?")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
LAYERS = ("attnverify", "theory", "numerics", "verification", "figures", "bench", "tests", "examples")


def _sources() -> list[Path]:
    return [p for layer in LAYERS for p in (ROOT / layer).rglob("*.py") if (ROOT / layer).is_dir()]


def _cited_sections(text: str) -> set[str]:
    cited = set()
    for match in CITATION.finditer(text):
        for first, last in SECTION.findall(match.group(1)):
            cited.update(s for s in (first, last) if s)
    return cited


def test_theory_is_long_enough_to_stand_on_its_own():
    assert len(THEORY.read_text().splitlines()) >= 300


def test_every_cited_section_of_docs_theory_exists():
    defined = set(HEADING.findall(THEORY.read_text()))
    missing = {}
    pages = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    for path in [p for p in _sources() if p.name != "test_docs.py"] + pages:
        absent = _cited_sections(path.read_text()) - defined
        if absent:
            missing[str(path.relative_to(ROOT))] = sorted(absent)
    assert not missing, f"citations of sections that docs/theory.md does not define: {missing}"


def test_no_source_cites_documents_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in _sources()
                 if re.search(r"(?<![\w/])(THEORY|STYLE)\.md|\.\./shared", p.read_text())]
    assert not offenders


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_resolve(page):
    path = ROOT / page
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page}: broken links {broken}"


def test_the_citation_checker_catches_a_missing_section():
    # The checker itself can fail: a citation of a section that is not a heading is found.
    defined = set(HEADING.findall(THEORY.read_text()))
    assert _cited_sections("see docs/theory.md §8.3-8.4 and §99.9") - defined == {"99.9"}
    assert _cited_sections("docs/theory.md §2 and §3.4") == {"2", "3.4"}
