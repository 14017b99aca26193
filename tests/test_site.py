"""The built documentation site, as a browser lays it out: no rendering defects.

``mkdocs build`` proves the links; only a browser shows what a reader sees. The site is
built once, served on a local port, and every page is opened in headless Chromium at
1400 x 1000 px, where a script reports, per page:

* text with a literal ``\\|`` (an escaped pipe inside inline code, in a table cell);
* a table wider than its column (cut off, or only visible by scrolling sideways);
* a code block wider than its column, or with text under its copy button;
* an identifier in inline code broken across two lines between two letters or digits
  (``torch.nn.E`` / ``mbedding``).

Skipped where Chromium is absent (``apt-get install chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1400, 1000
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CHECK_JS = REPO / "tests" / "site_check.js"  # measures each page in the browser


@functools.cache
def browser() -> str | None:
    return next(filter(None, map(shutil.which, BROWSERS)), None)


pytestmark = [
    pytest.mark.harness,  # a browser on every page: 15 s, run by `python -m pytest -m harness`
    pytest.mark.skipif(
        browser() is None,
        reason="needs Chromium to check the rendered site: apt-get install chromium "
        "(Debian/Ubuntu; .ci/run installs it)",
    ),
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site, served on a free local port: (its folder, its URL)."""
    folder = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def open_in_browser(site, pages: list[str], tmp_path) -> dict[str, list[str]]:
    """Runs CHECK_JS over ``pages`` (paths under the site) in headless Chromium."""
    folder, url = site
    script = f"const WIDTH = {WIDTH}, HEIGHT = {HEIGHT}, PAGES = {json.dumps(pages)};\n"
    script += CHECK_JS.read_text(encoding="utf-8")
    (folder / "_check.html").write_text(
        f"<!doctype html><html><body><script>{script}</script></body></html>", encoding="utf-8"
    )
    done = subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={WIDTH + 50},{HEIGHT + 50}",
            "--virtual-time-budget=120000",
            "--dump-dom",
            f"{url}/_check.html",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # The last one: the script's own text names the element too.
    _, marker, found = done.stdout.rpartition('<pre id="results">')
    assert marker, f"Chromium gave no results (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.partition("</pre>")[0]))


def test_every_page_renders_without_defects(site, tmp_path):
    folder, _ = site
    pages = sorted(
        "/" + "".join(f"{part}/" for part in p.relative_to(folder).parent.parts)
        for p in folder.rglob("index.html")
    )
    assert "/parity/" in pages and "/" in pages
    results = open_in_browser(site, pages, tmp_path)
    assert set(results) == set(pages)
    problems = [f"{page}: {p}" for page, found in results.items() for p in found]
    assert not problems, "\n".join(problems)
