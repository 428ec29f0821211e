"""The documentation a person reads first: a README that is short and starts with the two
commands, and every document reachable from it through links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMANDS = ["pip install -e . && python -m explorer.search search_spaces/mask_ratio.yaml",
            'pip install -e ".[test]" && pytest']


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", path.read_text(), re.M)}


def _links(path: Path) -> list[tuple[Path, str]]:
    out = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, anchor = target.partition("#")
        out.append(((path.parent / file).resolve() if file else path, anchor))
    return out


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.encode()) < 12 * 1024
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln.strip() for ln in first_block.splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands == COMMANDS
    assert text.index("```bash") < text.index("## What each scale trains")


def test_every_doc_is_reachable_from_the_readme_and_every_link_resolves():
    seen, todo, broken = set(), [README], []
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for target, anchor in _links(page):
            if not target.exists():
                broken.append(f"{page.name} -> {target}")
            elif target.suffix == ".md":
                if anchor and _slug(anchor) not in _anchors(target):
                    broken.append(f"{page.name} -> {target.name}#{anchor}")
                todo.append(target)
    assert broken == []
    docs = {p.resolve() for p in (REPO / "docs").rglob("*.md") if "_incoming" not in p.parts}
    assert docs and docs <= seen, f"not linked: {sorted(p.name for p in docs - seen)}"
    assert (REPO / "reports" / "README.md").resolve() in seen
