"""Runs every ```python block of README.md and docs/**/*.md, one test per block.

Blocks are found with sybil's Markdown lexer. Each block is **standalone**: it runs
in a fresh namespace (``__name__ == "__main__"``) and a fresh empty working directory,
so it must import and create everything it uses. An HTML comment on the line before
the fence (invisible on the rendered page) changes that:

* ``<!-- test: continue -->``: the block continues the page's previous Python block,
  in its namespace and working directory (the page should say so in prose too).
  Run alone (``-k``), the test first runs the blocks it continues.
* ``<!-- test: subprocess -->``: runs in a fresh interpreter, for settings that must
  come before JAX starts (``use_inline_cpu_dispatch``).
* ``<!-- test: env NAME=VALUE ... -->``: a fresh interpreter with these environment
  variables, e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` for 8 CPU devices.
* ``<!-- test: processes N [env ...] -->``: N interpreters at once, as N hosts of a
  ``jax.distributed`` run, each with ``COORDINATOR`` (a free local port),
  ``NUM_PROCESSES`` and ``PROCESS_ID`` set.

* ``<!-- test: tokenizer -->``: the block needs GPT-2's BPE files (it tokenizes); without
  them it is skipped up front (``conftest.py``), as is every block that continues it.

Words can be combined (``continue processes 2 env ...``): the blocks continued run in
this process first (e.g. to write the files a script reads), then the block runs as
said. This module runs in one pytest-xdist worker (``--dist loadscope``), so that a
continued block finds the namespace it continues.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sybil_lexers = pytest.importorskip("sybil.parsers.markdown.lexers")
from sybil import Document  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
DIRECTIVE = re.compile(r"<!--\s*test:(?P<words>[^>]*?)-->\s*\n\s*$")
SUBPROCESS_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    index: int  # among the page's Python blocks
    line: int
    source: str
    continues: bool = False
    subprocess: bool = False
    processes: int = 1
    env: tuple[tuple[str, str], ...] = ()
    tokenizer: bool = False

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def parse_directive(words: str, where: str) -> dict:
    """The options of one ``<!-- test: ... -->`` comment."""
    options: dict = {}
    tokens = words.split()
    while tokens:
        word = tokens.pop(0)
        if word == "continue":
            options["continues"] = True
        elif word == "tokenizer":
            options["tokenizer"] = True
        elif word == "subprocess":
            options["subprocess"] = True
        elif word == "processes" and tokens and tokens[0].isdigit():
            options["processes"] = int(tokens.pop(0))
            options["subprocess"] = True
        elif word == "env":
            env = []
            while tokens and "=" in tokens[0]:
                env.append(tuple(tokens.pop(0).split("=", 1)))
            if not env:
                raise ValueError(f"{where}: 'env' needs NAME=VALUE words")
            options["env"] = tuple(env)
            options["subprocess"] = True
        else:
            raise ValueError(f"{where}: unknown word {word!r} in <!-- test: {words.strip()} -->")
    return options


def page_blocks(page: Path) -> list[Block]:
    """The Python blocks of ``page``, in order, with their options."""
    document = Document(page.read_text(encoding="utf-8"), str(page))
    lexer = sybil_lexers.FencedCodeBlockLexer(
        language="python", mapping={"language": "language", "source": "source"}
    )
    blocks = []
    for region in lexer(document):
        line = document.text.count("\n", 0, region.start) + 1
        before = document.text[: region.start]
        directive = DIRECTIVE.search(before[-400:])
        options = {}
        if directive:
            options = parse_directive(directive["words"], f"{page.name}:{line}")
        source = "\n" * line + str(region.lexemes["source"])  # tracebacks show page lines
        blocks.append(Block(page, len(blocks), line, source, **options))
    return blocks


BLOCKS = [block for page in PAGES for block in page_blocks(page)]


def chain(block: Block) -> list[Block]:
    """``block`` and the blocks it continues, first to last."""
    blocks = [b for b in BLOCKS if b.page == block.page]
    start = block.index
    while blocks[start].continues:
        if start == 0:
            raise ValueError(f"{block.name}: 'continue' on the page's first Python block")
        start -= 1
    return blocks[start : block.index + 1]


@dataclasses.dataclass
class _Run:
    """A page's namespace and directory after its block ``index`` ran."""

    index: int
    namespace: dict
    workdir: Path


_last_run: dict[Path, _Run] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_in_subprocesses(block: Block, workdir: Path) -> None:
    script = workdir / f"block_{block.line}.py"
    script.write_text(block.source, encoding="utf-8")
    env = {**os.environ, **dict(block.env)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if block.processes > 1:
        env.update(COORDINATOR=f"127.0.0.1:{_free_port()}", NUM_PROCESSES=str(block.processes))
    procs = [
        subprocess.Popen(
            [sys.executable, script.name],
            cwd=workdir,
            env={**env, "PROCESS_ID": str(i)} if block.processes > 1 else env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(block.processes)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = [
        (i, out) for i, (p, out) in enumerate(zip(procs, outputs, strict=True)) if p.returncode != 0
    ]
    assert not failed, f"{block.name} failed in process {failed[0][0]}:\n{failed[0][1][-4000:]}"


def run_block(block: Block, namespace: dict, workdir: Path) -> None:
    if block.subprocess:
        run_in_subprocesses(block, workdir)
    else:
        exec(compile(block.source, str(block.page), "exec"), namespace)


def _param(block: Block):
    marks = [pytest.mark.tokenizer] if any(b.tokenizer for b in chain(block)) else []
    return pytest.param(block, id=block.name, marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_block_runs(block, tmp_path_factory, monkeypatch):
    blocks = chain(block)
    last = _last_run.get(block.page)
    if block.continues and last is not None and last.index == block.index - 1:
        todo, namespace, workdir = [block], last.namespace, last.workdir
    else:
        todo = blocks
        namespace = {"__name__": "__main__"}
        workdir = tmp_path_factory.mktemp(block.page.stem)
    _last_run.pop(block.page, None)
    monkeypatch.chdir(workdir)
    for b in todo:
        run_block(b, namespace, workdir)
    _last_run[block.page] = _Run(block.index, namespace, workdir)


def test_pages_have_python_blocks():
    """The collection works: the pages that teach the API have runnable examples."""
    pages = {b.page.name for b in BLOCKS}
    assert {"getting_started.md", "data.md", "modules.md"} <= pages, pages


# A measured speed or size ratio ("4.0x faster", "1.10x memcpy", "0.75x the time").
SPEED_FIGURE = re.compile(r"\b\d+(?:\.\d+)?x (?:faster|slower|memcpy|less|the time)")


def test_speed_figures_come_only_from_the_generated_results():
    """Pages quote docs/results/benchmarks.md (``<!-- benchmark-rows -->``), never retype it."""
    typed = [
        f"{page.relative_to(REPO)}:{n}: {line.strip()}"
        for page in PAGES
        if page.parent.name != "results"
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if SPEED_FIGURE.search(line)
    ]
    assert not typed, "\n".join(typed)


def test_benchmark_rows_quote_the_generated_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    results = REPO / "docs" / hooks.BENCHMARKS
    rows = [
        line for line in results.read_text(encoding="utf-8").splitlines() if line.startswith("| ")
    ]
    expected = [row for row in rows if row.split(" | ")[1] == "positions"]
    quoted = hooks.benchmark_rows(results, ["positions"], depth=0)
    assert expected and all(row in quoted for row in expected)
    assert not any(row in quoted for row in rows[1:] if row not in expected)
    assert "](results/benchmarks.md)" in quoted
    with pytest.raises(ValueError, match="no rows of the sections"):
        hooks.benchmark_rows(results, ["no such section"], depth=0)
