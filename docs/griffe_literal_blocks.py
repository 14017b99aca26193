"""Griffe extension: reStructuredText literal blocks (``Example::``) become fenced code.

The package's docstrings introduce code as reST does, a paragraph ending in ``::``
followed by an indented block; Markdown would read a block indented by less than four
spaces as prose. Only the rendered documentation changes: the docstrings stay as
they are for ``help()`` and doctest.
"""

from __future__ import annotations

from typing import Any

import griffe


def fence_literal_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if not line.rstrip().endswith("::") or i >= len(lines) or lines[i].strip():
            continue
        indent = len(line) - len(line.lstrip())
        j = i + 1
        block: list[str] = []
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
        if not block:
            continue
        out[-1] = line.rstrip()[:-1]  # "Example::" -> "Example:"
        if not out[-1].strip(":").strip():
            out.pop()
        depth = min(len(b) - len(b.lstrip()) for b in block if b.strip())
        language = "pycon" if block[0].strip().startswith(">>>") else "python"
        pad = " " * indent
        out += ["", f"{pad}```{language}"]
        out += [pad + b[depth:] if b.strip() else "" for b in block]
        out += [f"{pad}```", ""]
        i = i + 1 + len(block)
    return "\n".join(out)


class LiteralBlocks(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_literal_blocks(obj.docstring.value)
