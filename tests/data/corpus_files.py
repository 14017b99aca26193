"""Writers of real corpus files for the tests: JSONL (plain, .gz, .zst), Parquet, HF datasets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

# Adversarial documents: whitespace at both edges, empty ones, contractions and digits at
# the edges (which GPT-2's pre-tokenizer would merge across a plain join), non-ASCII.
DOCS = [
    "  leading spaces and a trailing one ",
    "'ll start with a contraction's tail",
    "",
    "\n\nnewlines first, then none",
    "ends in digits 123",
    "456 starts in digits",
    "   ",
    "über 😀 emoji\t",
    "\r\nCRLF inside\r\n and CR\r",
    "ends in half a wo",
    "rd",
    "<|endoftext|> inside a document is the special token too",
]


def write_jsonl(path: Path, docs, field: str = "text", compression: str | None = None) -> Path:
    data = "".join(json.dumps({"id": i, field: d}) + "\n" for i, d in enumerate(docs)).encode()
    if compression == "gz":
        data = gzip.compress(data)
    elif compression == "zst":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def write_parquet(path: Path, docs, field: str = "text", row_group_size: int = 3) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(len(docs))), field: list(docs)})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def crash_once(job, marker):
    """A unit task whose first attempt kills its worker process (as an OOM kill would)."""
    import os
    from pathlib import Path

    from flax_embed.data.shards import run_unit

    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return run_unit(job)
