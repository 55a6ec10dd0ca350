"""The project's Markdown as the documentation tests read it: its Python blocks with the comment
that says how each one is run, its relative links, and the anchors its headings make.

A block's marker is an HTML comment on the line before its fence (blank lines between are allowed):

    <!-- example -->                          (or no comment at all) a program that ends by itself
    <!-- example: until="TEXT" -->            a program that runs until stopped; more keys:
                                              after-stop="TEXT", peers=3 (tests/test_docs_examples.py)
    <!-- fragment: WHY -->                    not a whole program: not run
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_FENCES = {"python", "py", "python3"}
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
_MARKER = re.compile(r"^\s*<!--\s*(example|fragment)\b(.*?)-->\s*$")
_ATTRIBUTE = re.compile(r'([\w-]+)(?:="([^"]*)"|=(\S+))?')
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+).+?\1")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def documentation() -> list[Path]:
    """The files whose examples run: both landing pages and the guides under docs/."""
    return [ROOT / "README.md", ROOT / "README.vi.md", *sorted((ROOT / "docs").glob("*.md"))]


def linked_files() -> list[Path]:
    """The files whose links are checked: the documentation and every other README."""
    others = [p for p in sorted(ROOT.glob("*/README*.md")) if ".venv" not in p.parts and "node_modules" not in p.parts]
    return [*documentation(), *others]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass
class Block:
    """One ```python block: where its code starts (1-based line of the Markdown file), its code,
    and its marker (``kind`` "example" or "fragment"; ``options`` the marker's key=value pairs)."""

    path: Path
    line: int
    code: str
    kind: str = "example"
    options: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # a fragment's

    @property
    def where(self) -> str:
        return f"{relative(self.path)}:{self.line}"


@dataclass
class Problem:
    where: str
    what: str
    missing: str = ""  # a link's: the file it points to, when that file does not exist


def _parse_marker(kind: str, rest: str) -> tuple[dict[str, str], str]:
    rest = rest.strip()
    if kind == "fragment":
        return {}, rest.removeprefix(":").strip()
    if not rest:
        return {}, ""
    if not rest.startswith(":"):
        raise ValueError(f"an example marker is <!-- example --> or <!-- example: key=value ... -->, got {rest!r}")
    options = {}
    for match in _ATTRIBUTE.finditer(rest[1:]):
        options[match.group(1)] = match.group(2) if match.group(2) is not None else (match.group(3) or "")
    return options, ""


def python_blocks(path: Path) -> tuple[list[Block], list[Problem]]:
    """Every Python block of ``path`` with its marker, and the markers that mark no Python block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[Problem] = []
    marker: tuple[int, str, str] | None = None  # (line, kind, rest) of the latest marker not yet used
    i = 0
    while i < len(lines):
        text = lines[i]
        found = _MARKER.match(text)
        fence = _FENCE.match(text)
        if found:
            if marker is not None:
                problems.append(Problem(f"{relative(path)}:{marker[0]}", "a marker followed by another marker"))
            marker = (i + 1, found.group(1), found.group(2))
        elif fence:
            close = fence.group(2)
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(close)), len(lines))
            language = fence.group(3).lower()
            if language in PYTHON_FENCES:
                block = Block(path, i + 2, "\n".join(lines[i + 1:end]) + "\n")
                if marker is not None:
                    block.kind = marker[1]
                    try:
                        block.options, block.reason = _parse_marker(marker[1], marker[2])
                    except ValueError as exc:
                        problems.append(Problem(f"{relative(path)}:{marker[0]}", str(exc)))
                    if block.kind == "fragment" and not block.reason:
                        problems.append(Problem(f"{relative(path)}:{marker[0]}", "a fragment marker must say why"))
                blocks.append(block)
            elif marker is not None:
                problems.append(Problem(f"{relative(path)}:{marker[0]}",
                                        f"the marker is followed by a ```{language} block, not a Python one"))
            marker = None
            i = end + 1
            continue
        elif text.strip() and marker is not None:
            problems.append(Problem(f"{relative(path)}:{marker[0]}", "the marker is followed by text, not a Python block"))
            marker = None
        i += 1
    if marker is not None:
        problems.append(Problem(f"{relative(path)}:{marker[0]}", "the marker is followed by no Python block"))
    return blocks, problems


def _prose(path: Path) -> list[tuple[int, str]]:
    """The lines outside fenced blocks, with their numbers, inline code taken out."""
    lines = path.read_text(encoding="utf-8").splitlines()
    kept: list[tuple[int, str]] = []
    close: str | None = None
    for number, text in enumerate(lines, 1):
        fence = _FENCE.match(text)
        if close is not None:
            if text.strip().startswith(close):
                close = None
            continue
        if fence:
            close = fence.group(2)
            continue
        kept.append((number, _INLINE_CODE.sub("", text)))
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text without markup, lowercased, punctuation dropped
    (letters of any script, digits, _ and - kept), spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of ``path``'s headings, the second of a name with ``-1`` as GitHub makes it."""
    seen: dict[str, int] = {}
    found = set()
    for _, text in _prose(path):
        heading = _HEADING.match(text)
        if heading is None:
            continue
        name = slug(heading.group(2))
        count = seen.get(name, 0)
        seen[name] = count + 1
        found.add(name if count == 0 else f"{name}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """Every relative link of ``path`` (line, target), outside code; web and mail links left out."""
    found = []
    for number, text in _prose(path):
        for match in _LINK.finditer(text):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue
            found.append((number, target))
    return found


def broken_links(path: Path) -> list[Problem]:
    """Links of ``path`` to a file that does not exist, or to an anchor its target does not have."""
    problems = []
    for number, target in links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        where = f"{relative(path)}:{number}"
        if not destination.exists():
            shown = relative(destination) if destination.is_relative_to(ROOT) else str(destination)
            problems.append(Problem(where, f"{target}: no file {shown}", missing=shown))
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(Problem(where, f"{target}: {relative(destination)} has no heading with the anchor #{anchor}"))
    return problems
