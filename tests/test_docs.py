"""Every reference resolves inside the repository: citations of docs/design.md name sections it
has, links in the markdown files point to files that exist, and nothing cites the design card
that lives outside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for pattern in (
        "impresslearn/**/*.py",
        "kernels/*.py",
        "csrc/*",
        "bench/*.py",
        "tests/**/*.py",
        ".ci/run",
        "*.md",
        "docs/*.md",
        "results/**/*.sh",
        "setup.py",
        "pyproject.toml",
    )
    for p in ROOT.glob(pattern)
    if p.is_file()
]


def sections() -> set[str]:
    """ "2", "2.6", ... for every numbered heading of docs/design.md."""
    text = (ROOT / "docs" / "design.md").read_text()
    return set(re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", text, flags=re.M))


def test_design_citations_name_existing_sections():
    known = sections()
    assert {"1", "2", "3", "6"} <= known
    bad, cited = [], 0
    for path in SOURCES:
        for m in re.finditer(r"design\.md §(\d+(?:\.\d+)*)", path.read_text(errors="replace")):
            cited += 1
            if m[1] not in known:
                bad.append(f"{path.relative_to(ROOT)}: §{m[1]}")
    assert cited >= 5 and not bad, bad


def test_nothing_cites_the_design_card_outside_the_repository():
    this = Path(__file__).resolve()
    bad = [str(p.relative_to(ROOT)) for p in SOURCES if p.resolve() != this and "DESIGN.md" in p.read_text(errors="replace")]
    assert not bad, bad


def test_markdown_links_resolve():
    bad = []
    for md in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            if not (md.parent / target).exists():
                bad.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not bad, bad
