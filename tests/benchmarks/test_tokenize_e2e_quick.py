"""``benchmarks/tokenize_e2e.py --quick``: every row runs and every variant's ids are identical.

No timing is asserted (the lead's full run judges the targets); what is checked is
that each whole-process variant ran and gave the one call's ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tokenizer, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_gives_identical_ids_in_every_row():
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'benchmarks'}{os.pathsep}{REPO}",
           "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tokenize_e2e.py"),
                           "--quick"], capture_output=True, text=True, env=env, timeout=600,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
            if line.startswith("BENCH-ROW ")]  # fmt: skip
    assert len(rows) == 12
    notes = [row["note"] for row in rows if "ids identical" in row["note"]]
    assert len(notes) == 8 and not any("ids identical: False" in n for n in notes)
