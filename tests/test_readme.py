"""The README stays a true map: its contents links lead to its headings, and the layout section names every
top-level package and module of the source, so a new one cannot be added without a line in the map."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_contents_link_leads_to_a_heading() -> None:
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", README, flags=re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert len(links) >= 15
    assert [link for link in links if link not in anchors] == []


def test_the_layout_section_names_every_package_and_module() -> None:
    section = README.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    source = REPO / "src" / "tuneloop"
    names = {p.name.removesuffix(".py") for p in source.iterdir()
             if (p.suffix == ".py" and not p.name.startswith("_")) or (p.is_dir() and (p / "__init__.py").exists())}
    missing = sorted(n for n in names if f"`{n}" not in section)
    assert missing == []
