"""README, docs and docstrings point only inside the repository; the docs' navigation is complete."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # web addresses (papers, licences) and in-page anchors
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            bad.append(target)
    assert not bad, f"{page.name}: links that leave the repository or lead nowhere: {bad}"


def test_nothing_points_at_files_outside_the_repository():
    # The specifications we started from live outside the repository; docs/models/ holds our own.
    code = [*(ROOT / "lmaas_jax").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
    sources = [*PAGES, *sorted(code)]
    hits = [str(p.relative_to(ROOT)) for p in sources if "shared/spec" in p.read_text(encoding="utf-8")]
    assert not hits, f"references to ../shared/spec: {hits}"


def test_every_docs_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w/-]+\.md)\s*$", nav, flags=re.M))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages == listed, (pages - listed, listed - pages)


def test_history_lives_in_the_changelog_and_git():
    # The README is for users; library code states contracts: no round numbers anywhere, no
    # benchmark instance names in library code outside the datasets reader, one current result per
    # benchmark.
    round_number = re.compile(r"\b[Rr]ound \d+\b|_r\d\d\b")
    instance = re.compile(r"\b[pc]-n=\d+")
    code = [p for p in (ROOT / "lmaas_jax").rglob("*.py") if "datasets" not in p.parts]
    assert not [str(p) for p in [*PAGES, *code] if round_number.search(p.read_text(encoding="utf-8"))]
    assert not [str(p) for p in code if instance.search(p.read_text(encoding="utf-8"))]
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
    assert len(list((ROOT / "benchmarks" / "results").iterdir())) <= 15
