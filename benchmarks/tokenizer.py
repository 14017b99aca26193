"""Tokenizer: ``parallel_tokenize.encode_parallel`` against one tiktoken ``encode`` call.

The text is "The Verdict" repeated to 20 MB (``--quick``: 200 KB); both must give
identical ids. ``encode_parallel`` cuts the text at safe boundaries and encodes the
chunks on one thread per core (tiktoken releases the GIL), or with ``processes=True`` on
one worker process per core (what ``flax-embed tokenize`` runs; the pool is started
within the timed call).
"""

from __future__ import annotations

import sys

from common import Row, corpus_text, emit, fmt_time, interleaved, section_main

SECTION = "tokenizer"


def bench(quick: bool) -> None:
    import numpy as np

    from flax_embed.tokenizer import ENDOFTEXT, gpt2_tokenizer

    try:
        from flax_embed.data.parallel_tokenize import default_workers, encode_parallel
    except ImportError:
        emit(Row(SECTION, "encode_parallel vs one tiktoken encode", "not available", "", None,
                 note="flax_embed.data.parallel_tokenize is not in this checkout"))  # fmt: skip
        return
    size = 200_000 if quick else 20_000_000
    text = corpus_text(size)
    tokenizer = gpt2_tokenizer()
    special = {ENDOFTEXT}
    reference = np.asarray(tokenizer.encode(text, allowed_special=special), np.int32)
    # Quick: small chunks, so that the text is still cut and encoded on several threads.
    chunks = {"chunk_chars": size // 16} if quick else {}
    identical = {
        "parallel": bool(np.array_equal(encode_parallel(text, **chunks), reference)),
        "processes": bool(
            np.array_equal(encode_parallel(text, processes=True, **chunks), reference)
        ),
    }
    rounds = 3
    t = interleaved(
        {
            "one": lambda: tokenizer.encode(text, allowed_special=special),
            "parallel": lambda: encode_parallel(text, **chunks),
            "processes": lambda: encode_parallel(text, processes=True, **chunks),
        },
        rounds=rounds,
        warmup=0,
    )
    for key, what in [("parallel", "threads"), ("processes", "processes")]:
        speedup = t["one"] / t[key]
        emit(
            Row(
                SECTION,
                f"encode_parallel ({what}) vs one tiktoken encode, {len(text) / 1e6:.1f} MB "
                f"({reference.size:,} tokens)",
                fmt_time(t[key]),
                f"{fmt_time(t['one'])} one call",
                speedup,
                target="≥ 1.7x on 2 cores, ids identical",
                met=None if quick else (speedup >= 1.7 and identical[key]),
                note=f"ids identical: {identical[key]}; {default_workers()} {what}; "
                f"medians of {rounds} interleaved runs",
            )
        )


if __name__ == "__main__":
    sys.exit(section_main(bench, __doc__, "200 KB of text: checks the harness"))
