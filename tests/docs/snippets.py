"""Fenced code blocks of the docs that are marked to be run by the tests.

A block is marked by an ``<!-- tested -->`` line right before its opening
fence; the marker is an HTML comment so readers never see it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "<!-- tested -->"
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Snippet:
    language: str
    code: str
    line: int  # of the opening fence, 1-based, for failure messages


def marked_snippets(path: Path) -> list[Snippet]:
    """The marked blocks of ``path``, in the order they appear."""
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() == MARKER:
            opening = FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
            if opening is None:
                raise ValueError(f"{path}:{index + 1}: {MARKER} is not followed by a fence")
            end = lines.index("```", index + 2)
            snippets.append(Snippet(opening.group(1), "\n".join(lines[index + 2:end]) + "\n",
                                    index + 2))
            index = end
        index += 1
    return snippets
