"""Packed documents: whole documents packed into rows, positions restarting per document.

The book's loader cuts one token stream into windows, so a window spans document
boundaries and its positions count across them. ``PackedDataset`` packs documents
into rows of ``seq_len`` instead, with Grain's / MaxText's feature dict per row:

* ``inputs``, ``inputs_segment_ids`` (1, 2, ... per document piece in the row, 0 for
  padding) and ``inputs_positions`` (restarting at 0 for each piece);
* ``targets``, ``targets_segment_ids``, ``targets_positions``.

Conventions (Grain's, where Grain defines them):

* A document of ``L`` tokens is the element ``{"inputs": doc[:-1], "targets": doc[1:]}``
  (``L - 1`` next-token pairs), so a target is always the next token of the same
  document and never crosses a boundary; a document's last token is a target, never
  an input. Documents of 0 or 1 tokens have no pair: they are skipped and counted
  (``skipped_documents``), never packed.
* A document of more than ``seq_len`` pairs: with ``long_documents="split"`` (the
  default) it becomes pieces of ``seq_len`` pairs (``seq_len + 1`` tokens, each
  overlapping the next by one token, so no pair is lost), each piece its own segment
  with positions from 0, as Grain's concat-then-split does to a split element; with
  ``"truncate"`` only its first ``seq_len`` pairs are kept (MaxText's truncation; the
  dropped pairs are counted in ``truncated_pairs``). Grain's first/best-fit packers
  require elements no longer than the row and raise otherwise.
* Padding is 0 in every feature, as in Grain.

The packing plan (which piece goes to which row, at which offset) is built once, in
NumPy, in O(pieces) memory; a row or batch of rows is then one vectorised gather
(``gather``) in O(batch) memory, so the dataset is random-access and works with
``Batcher`` (shuffling, process shards, exact resume) and as a Grain ``MapDataset``
source.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flax_embed._validation import check_ids_1d, check_positive_int, first_out_of_range
from flax_embed.data.fingerprint import token_digest
from flax_embed.data.shards import (
    MANIFEST,
    manifest_tokenizer,
    read_manifest,
    verify_document_index,
    verify_shard,
)
from flax_embed.data.token_files import open_token_file
from flax_embed.tokenizer import ENDOFTEXT_ID

__all__ = ["PACKING_METHODS", "Documents", "PackedDataset", "PackedRows", "ShardTokens"]

PACKING_METHODS = ("first_fit", "best_fit", "concat_split")
"""``first_fit`` / ``best_fit``: Grain's ``FirstFitPackIterDataset`` /
``BestFitPackIterDataset``; ``concat_split``: Grain's ``ConcatThenSplitIterDataset``."""

FEATURES = (
    "inputs",
    "inputs_segment_ids",
    "inputs_positions",
    "targets",
    "targets_segment_ids",
    "targets_positions",
)

PackedRows = dict[str, np.ndarray]
"""A packed row (``(T,)`` arrays) or batch of rows (``(B, T)``), keyed by ``FEATURES``."""


def _excl_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, out=out[1:])
    return out


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])``, vectorised."""
    starts = _excl_cumsum(counts)
    total = int(starts[-1])
    return np.arange(total, dtype=np.int64) - np.repeat(starts[:-1], counts)


class ShardTokens:
    """The documents' ids of a tokenized folder, back to back, separators left out.

    A read-only 1-D array-like over the memory-mapped shards (``Documents.from_files``
    makes it): ``view[i]``, ``view[a:b]`` and ``view[indices]`` gather across shard
    files, so a document may span two shards. Position ``c`` of document ``k`` is the
    stream position ``c + k`` (one separator between documents). Pickling reopens the
    shards by path (Grain's worker processes).

    Args:
      paths: the shard files, in order. vocab_size: the manifest's.
      offsets: the documents' ``(D + 1,)`` offsets in this view (``Documents.offsets``).
      check_ids: check every id against ``vocab_size`` when opening.
    """

    ndim = 1

    def __init__(self, paths: Sequence[str | os.PathLike[str]], vocab_size: int,
                 offsets: np.ndarray, *, check_ids: bool = False):  # fmt: skip
        self.paths = [Path(p) for p in paths]
        self.vocab_size = vocab_size
        self._offsets = np.asarray(offsets, np.int64)
        self._files = [open_token_file(p, vocab_size, check_ids)[0] for p in self.paths]
        self.dtype = np.result_type(*[f.dtype for f in self._files]) if self._files else (
            np.dtype(np.int64))  # fmt: skip
        self._file_starts = np.cumsum([0, *(len(f) for f in self._files)]).astype(np.int64)
        self.stream_length = int(self._file_starts[-1])
        self.shape = (int(self._offsets[-1]),)
        self.size = self.shape[0]

    def __len__(self) -> int:
        return self.shape[0]

    def read_stream(self, positions_N: np.ndarray) -> np.ndarray:
        """The ids at ``positions_N`` of the shards read as one stream (separators in)."""
        p = np.asarray(positions_N, np.int64)
        if len(self._files) == 1:
            return np.asarray(self._files[0][p])
        out = np.empty(p.shape, self.dtype)
        f = np.searchsorted(self._file_starts, p, side="right") - 1
        for k in np.unique(f).tolist():
            mask = f == k
            out[mask] = self._files[k][p[mask] - self._file_starts[k]]
        return out

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self.shape[0])
            return self[np.arange(start, stop, step, dtype=np.int64)]
        c = np.asarray(index)
        if not np.issubdtype(c.dtype, np.integer):
            raise TypeError(f"token index must be integers, got dtype {c.dtype}")
        c = c.astype(np.int64)
        n = self.shape[0]
        if c.size and (c.min() < -n or c.max() >= n):
            raise IndexError(f"token index out of range for {n} tokens")
        c = np.where(c < 0, c + n, c)
        doc = np.searchsorted(self._offsets, c, side="right") - 1
        return self.read_stream(c + doc)

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getstate__(self) -> dict:
        return {"paths": self.paths, "vocab_size": self.vocab_size, "offsets": self._offsets}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"ShardTokens(files={len(self.paths)}, tokens={self.shape[0]})"


class Documents(Sequence[np.ndarray]):
    """Documents as one flat token array plus an offsets array (a document index).

    Document ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``: Megatron's ``.idx``
    layout. ``tokens`` may be a memory-mapped token file; nothing is copied.

    Example::

      >>> docs = Documents.from_arrays([np.array([5, 6, 7]), np.array([8])])
      >>> len(docs), docs[0].tolist(), docs.offsets.tolist()
      (2, [5, 6, 7], [0, 3, 4])

    Args:
      tokens: the ids of every document, back to back, ``(N,)`` integers.
      offsets: ``(D + 1,)`` integers, ``offsets[0] == 0``, non-decreasing,
        ``offsets[-1] == N``.
      name: what to call ``offsets`` in errors (e.g. the index file's path).

    Raises:
      ValueError: an offsets array that disagrees with ``tokens`` (named); an id of
        an in-memory ``tokens`` outside ``[0, 2**31)`` (rows are int32).
    """

    def __init__(self, tokens: np.ndarray | ShardTokens, offsets: np.ndarray, *,
                 name: str = "offsets"):  # fmt: skip
        tokens = tokens if isinstance(tokens, (np.ndarray, ShardTokens)) else np.asarray(tokens)
        check_ids_1d("tokens", tokens)  # type: ignore[arg-type]
        if not isinstance(tokens, (np.memmap, ShardTokens)) and (
                bad := first_out_of_range(tokens, 2**31)):  # fmt: skip
            # Rows are int32; a memory-mapped token file's ids were checked when opened.
            raise ValueError(
                f"tokens[{bad[0]}] = {int(tokens[bad[0]])} is not an id in [0, 2**31) "
                f"({bad[1]} such)"
            )
        offsets = np.asarray(offsets)
        if offsets.ndim != 1 or len(offsets) < 1:
            raise ValueError(f"{name} must be a 1-D array of D + 1 offsets, got {offsets.shape}")
        if offsets.size and not np.issubdtype(offsets.dtype, np.integer):
            raise TypeError(f"{name} must be integers, got dtype {offsets.dtype}")
        offsets = offsets.astype(np.int64)
        if offsets[0] != 0:
            raise ValueError(f"{name}[0] must be 0, got {int(offsets[0])}")
        if offsets[-1] != len(tokens):
            raise ValueError(
                f"{name} disagrees with its tokens: it ends at {int(offsets[-1])}, "
                f"the tokens hold {len(tokens)}"
            )
        if (bad := np.flatnonzero(np.diff(offsets) < 0)).size:
            i = int(bad[0])
            raise ValueError(
                f"{name} must be non-decreasing: {name}[{i + 1}]={int(offsets[i + 1])} "
                f"< {name}[{i}]={int(offsets[i])}"
            )
        self.tokens = tokens
        self.offsets = offsets

    @classmethod
    def from_arrays(cls, documents: Sequence[Any]) -> Documents:
        """Documents from a sequence of 1-D id arrays (copied into one array)."""
        arrays = [np.asarray(d) for d in documents]
        for i, a in enumerate(arrays):
            check_ids_1d(f"documents[{i}]", a)
        lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
        tokens = np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)
        return cls(tokens, _excl_cumsum(lengths))

    @classmethod
    def from_files(cls, path: str | os.PathLike[str], *, verify: bool = True) -> Documents:
        """The documents of a folder written by ``flax-embed tokenize``, memory-mapped.

        Reads the manifest (the folder or its ``manifest.json``), its shards and its
        document index (``documents.npy``, see ``docs/corpora.md``). Documents are the
        corpus's (each JSONL line, Parquet/Arrow row or text file), exact even where
        a document's text holds the separator; the separators between them are left
        out. ``tokens`` is a ``ShardTokens`` view: nothing is copied but the index.

        Example (the first document's text holds the separator; it stays one document)::

          >>> import pathlib, tempfile
          >>> from flax_embed.data import tokenize_corpus
          >>> from flax_embed.tokenizer import encode
          >>> with tempfile.TemporaryDirectory() as tmp:
          ...     a, b = pathlib.Path(tmp, "a.txt"), pathlib.Path(tmp, "b.txt")
          ...     _ = a.write_text("One <|endoftext|> document."), b.write_text("Another.")
          ...     _ = tokenize_corpus([a, b], pathlib.Path(tmp, "out"), shard_tokens=4)
          ...     docs = Documents.from_files(pathlib.Path(tmp, "out"))
          ...     print(len(docs), docs[0].tolist() == encode(a.read_text()).tolist())
          2 True

        Args:
          path: the folder or its ``manifest.json``.
          verify: check each shard's and the index's sha256 against the manifest, every
            id against the vocabulary, and that a separator precedes each document but
            the first (reads the corpus once); else only sizes and the index's order.

        Raises:
          ValueError (``TokenFileError``): no manifest, no document index (a folder
            tokenized with ``eot=False`` or before manifest version 3), or an index or
            shard that disagrees with the manifest or the shards; the message names
            the file.
        """
        manifest, folder = read_manifest(path)
        entry = manifest.get("document_index")
        if entry is None:
            why = ("its documents were joined by nothing (eot=False)" if manifest.get("eot")
                   is False else f"written before manifest version 3 (version "
                   f"{manifest.get('version')})")  # fmt: skip
            raise ValueError(
                f"{folder / MANIFEST}: no document index ({why}); run "
                "flax-embed tokenize again with the separator to write one"
            )
        for shard in manifest["shards"]:
            verify_shard(folder, shard, checksum=verify)
        verify_document_index(folder, manifest, checksum=verify)
        index = folder / entry["name"]
        starts_D = np.load(index, allow_pickle=False)
        paths = [folder / s["name"] for s in manifest["shards"]]
        n, d = int(manifest["tokens"]), len(starts_D)
        if d == 0:
            if n:
                raise ValueError(f"{index}: no document, but the shards hold {n} tokens")
        elif starts_D[0] != 0 or starts_D[-1] > n:
            raise ValueError(f"{index}: disagrees with the shards: documents start at "
                             f"{int(starts_D[0])} .. {int(starts_D[-1])}, the shards hold "
                             f"{n} tokens")  # fmt: skip
        elif (bad := np.flatnonzero(np.diff(starts_D) < 1)).size:
            k = int(bad[0]) + 1
            raise ValueError(
                f"{index}: document {k} starts at {int(starts_D[k])}, not after "
                f"document {k - 1} and its separator ({int(starts_D[k - 1])})"
            )
        # Compact offsets (separators left out): document k loses the k separators before it.
        offsets = np.append(starts_D - np.arange(d), n - max(d - 1, 0)).astype(np.int64)
        tokens = ShardTokens(paths, manifest["vocab_size"], offsets, check_ids=verify)
        if verify and d > 1:
            identity = manifest_tokenizer(manifest)
            sep = ENDOFTEXT_ID if identity is None else identity["separator_id"]
            before = tokens.read_stream(starts_D[1:] - 1)
            if (bad := np.flatnonzero(before != sep)).size:
                k = int(bad[0]) + 1
                raise ValueError(
                    f"{index}: disagrees with the shards: document {k} starts at "
                    f"{int(starts_D[k])}, but token {int(starts_D[k]) - 1} is "
                    f"{int(before[k - 1])}, not the separator {sep}"
                )
        return cls(tokens, offsets, name=str(index))

    @classmethod
    def split_at(cls, tokens: np.ndarray, separator_id: int) -> Documents:
        """Documents of a token stream separated by ``separator_id`` (dropped).

        E.g. a token file written with ``<|endoftext|>`` (50256) between documents
        (``read_token_file``'s memory map works). The tokens other than separators are
        copied into memory, O(N). A document whose text contained the separator's
        text splits there: only a document index written with the tokens is exact
        (``from_files`` reads the one ``flax-embed tokenize`` writes).
        """
        tokens = np.asarray(tokens) if not isinstance(tokens, np.ndarray) else tokens
        check_ids_1d("tokens", tokens)
        sep = np.flatnonzero(tokens == separator_id)
        keep = np.ones(len(tokens), dtype=bool)
        keep[sep] = False
        kept = tokens[keep]
        # Document k spans the tokens between separator k-1 and separator k.
        ends = np.concatenate([sep - np.arange(len(sep)), [len(kept)]])
        return cls(kept, np.concatenate([[0], ends]))

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per document, ``(D,)`` int64."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"document {i} out of range for {len(self)} documents")
        i %= len(self)
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def _first_or_best_fit(lengths_P: np.ndarray, seq_len: int, bins: int, best: bool):
    """Grain's first-/best-fit assignment of pieces to rows, in piece order.

    Like Grain's ``PackingDatasetIterator``: ``bins`` open rows; each piece goes to
    the first row it fits (first fit) or the fullest row it fits, the first of equals
    (best fit); when it fits none, the non-empty rows are emitted and the piece opens
    a fresh set of rows. The decision is sequential by nature; the loop handles only
    ints (no tokens), one NumPy comparison per piece.

    Returns:
      ``(row_P, offset_P, num_rows)``.
    """
    n = len(lengths_P)
    row_P = np.empty(n, dtype=np.int64)
    offset_P = np.empty(n, dtype=np.int64)
    used = np.zeros(bins, dtype=np.int64)
    base = 0
    for p, length in enumerate(lengths_P.tolist()):
        room = seq_len - length
        if best:
            score = np.where(used <= room, used, -1)
            b = int(score.argmax())
            fits = score[b] >= 0
        else:
            ok = used <= room
            b = int(ok.argmax())
            fits = bool(ok[b])
        if not fits:
            base += int(np.count_nonzero(used))
            used[:] = 0
            b = 0
        row_P[p] = base + b
        offset_P[p] = used[b]
        used[b] += length
    return row_P, offset_P, base + int(np.count_nonzero(used))


class PackedDataset:
    """Documents packed into rows of ``seq_len`` next-token pairs, Grain's way.

    Rows are dicts of ``(seq_len,)`` int32 arrays (see the module docstring for the
    features and conventions); ``gather(indices_B)`` returns ``(B, seq_len)`` ones.

    Example::

      >>> docs = [np.array([1, 2, 3, 4]), np.array([5, 6, 7]), np.array([8, 9])]
      >>> ds = PackedDataset(docs, seq_len=4, method="first_fit", num_packing_bins=2)
      >>> len(ds), ds[0]["inputs"].tolist(), ds[0]["inputs_segment_ids"].tolist()
      (2, [1, 2, 3, 8], [1, 1, 1, 2])
      >>> ds[0]["targets"].tolist(), ds[0]["inputs_positions"].tolist()
      ([2, 3, 4, 9], [0, 1, 2, 0])
      >>> round(ds.padding_fraction, 3)
      0.25

    Args:
      documents: a ``Documents`` (flat tokens + offsets, e.g. a document index beside
        a memory-mapped token file) or any sequence of 1-D id arrays.
      seq_len: row length ``T`` (pairs per row).
      method: ``"first_fit"``, ``"best_fit"`` or ``"concat_split"`` (``PACKING_METHODS``).
      num_packing_bins: rows open at once for first/best fit (Grain's
        ``num_packing_bins``); more bins, less padding. Unused by ``concat_split``.
      seed: ``None`` packs the documents in their order; an int packs them in the
        order ``np.random.Generator(np.random.PCG64(seed)).permutation(D)``.
      long_documents: ``"split"`` or ``"truncate"``, for documents of more than
        ``seq_len`` pairs (``concat_split`` splits them across rows either way
        unless ``"truncate"``).

    Raises:
      ValueError: ``seq_len < 1``, no documents, ``num_packing_bins < 1``, an unknown
        ``method`` or ``long_documents``; each names the argument.

    Attributes:
      skipped_documents: documents of fewer than 2 tokens (no next-token pair).
      truncated_pairs: pairs dropped by ``long_documents="truncate"``.
      padding_fraction: padding cells / all cells of the rows.
    """

    def __init__(
        self,
        documents: Documents | Sequence[Any],
        seq_len: int,
        *,
        method: str = "first_fit",
        num_packing_bins: int = 32,
        seed: int | None = None,
        long_documents: str = "split",
    ):
        self.seq_len = check_positive_int("seq_len", seq_len)
        if method not in PACKING_METHODS:
            raise ValueError(f"method must be one of {PACKING_METHODS}, got {method!r}")
        if long_documents not in ("split", "truncate"):
            raise ValueError(
                f"long_documents must be 'split' or 'truncate', got {long_documents!r}"
            )
        self.method = method
        self.num_packing_bins = check_positive_int("num_packing_bins", num_packing_bins)
        self.seed = None if seed is None else check_positive_int("seed", seed, minimum=0)
        self.long_documents = long_documents
        if not isinstance(documents, Documents):
            documents = Documents.from_arrays(documents)
        if len(documents) == 0:
            raise ValueError("documents is empty: nothing to pack")
        self.documents = documents
        self._build_plan()

    # -- the plan -------------------------------------------------------------------

    def document_order(self) -> np.ndarray:
        """The document indices in the order they are packed, ``(D,)``."""
        d = len(self.documents)
        if self.seed is None:
            return np.arange(d)
        return np.random.Generator(np.random.PCG64(self.seed)).permutation(d)

    def _build_plan(self) -> None:
        s = self.seq_len
        order = self.document_order()
        lengths = self.documents.lengths[order]
        pairs = lengths - 1
        kept = pairs > 0
        self.skipped_documents = int(np.count_nonzero(~kept))
        docs, pairs = order[kept], pairs[kept]
        if len(docs) == 0:
            raise ValueError(
                "documents holds no document of at least 2 tokens: nothing to pack "
                f"({self.skipped_documents} skipped)"
            )
        self.truncated_pairs = 0
        if self.long_documents == "truncate":
            self.truncated_pairs = int(np.maximum(pairs - s, 0).sum())
            pairs = np.minimum(pairs, s)
        starts = self.documents.offsets[docs]  # token index of each piece's first input
        if self.method == "concat_split":
            # One stream of all pairs, cut every s pairs; a piece is a document's part
            # within one row (Grain's concat-then-split: a split part restarts at 0).
            doc_start = _excl_cumsum(pairs)
            total = int(doc_start[-1])
            num_rows = -(-total // s)
            cuts = np.union1d(doc_start[:-1], np.arange(0, total, s, dtype=np.int64))
            lens = np.diff(np.append(cuts, total))
            doc = np.searchsorted(doc_start, cuts, side="right") - 1
            src = starts[doc] + (cuts - doc_start[doc])
            row, offset = cuts // s, cuts % s
        else:
            n = -(-pairs // s)  # pieces per document (1 when truncated)
            k = _ragged_arange(n)
            doc_rep = np.repeat(np.arange(len(docs)), n)
            src = starts[doc_rep] + k * s
            lens = np.minimum(pairs[doc_rep] - k * s, s)
            row, offset, num_rows = _first_or_best_fit(
                lens, s, self.num_packing_bins, self.method == "best_fit"
            )
            by_row = np.argsort(row, kind="stable")  # pieces of a row in placement order
            src, lens, row, offset = src[by_row], lens[by_row], row[by_row], offset[by_row]
        self._piece_src = src.astype(np.int64)
        self._piece_len = lens.astype(np.int64)
        self._piece_offset = offset.astype(np.int64)
        self._row_ptr = _excl_cumsum(np.bincount(row, minlength=num_rows))
        self.num_pieces = len(src)
        self.packed_pairs = int(self._piece_len.sum())
        self.padding_fraction = 1.0 - self.packed_pairs / (num_rows * s)

    # -- rows -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._row_ptr) - 1

    def gather(self, indices_B: np.ndarray) -> PackedRows:
        """Rows ``indices_B`` as ``(B, seq_len)`` int32 arrays: one vectorised gather."""
        rows = np.asarray(indices_B, dtype=np.int64).reshape(-1)
        n = len(self)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            bad = rows[(rows < 0) | (rows >= n)][0]
            raise IndexError(f"row {int(bad)} out of range for {n} rows")
        b, s = len(rows), self.seq_len
        lo, hi = self._row_ptr[rows], self._row_ptr[rows + 1]
        count = hi - lo
        within = _ragged_arange(count)  # each piece's index within its row
        piece = np.repeat(lo, count) + within
        local_row = np.repeat(np.arange(b), count)
        lens = self._piece_len[piece]
        j = _ragged_arange(lens)  # position within the piece
        tok_piece = np.repeat(np.arange(len(piece)), lens)
        src = self._piece_src[piece][tok_piece] + j
        r = local_row[tok_piece]
        c = self._piece_offset[piece][tok_piece] + j
        tokens = self.documents.tokens
        out = {k: np.zeros((b, s), dtype=np.int32) for k in FEATURES}
        out["inputs"][r, c] = tokens[src]
        out["targets"][r, c] = tokens[src + 1]
        out["inputs_segment_ids"][r, c] = within[tok_piece] + 1
        out["inputs_positions"][r, c] = j
        out["targets_segment_ids"][:] = out["inputs_segment_ids"]
        out["targets_positions"][:] = out["inputs_positions"]
        return out

    def __getitem__(self, index: int) -> PackedRows:
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        return {k: v[0] for k, v in self.gather(np.array([i % len(self)])).items()}

    def fingerprint(self) -> str:
        """Changes when the rows change: the tokens, the document index and the options."""
        h = hashlib.blake2b(digest_size=8)
        h.update(
            f"packed:{self.seq_len}:{self.method}:{self.num_packing_bins}:{self.seed}:"
            f"{self.long_documents}:".encode()
        )
        # A ShardTokens view slices like the array it stands for.
        h.update(token_digest(self.documents.tokens).encode())  # pyright: ignore[reportArgumentType]
        h.update(token_digest(self.documents.offsets).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"PackedDataset({len(self.documents)} documents -> {len(self)} rows of "
            f"{self.seq_len}, method={self.method!r}, padding {self.padding_fraction:.1%}, "
            f"{self.skipped_documents} skipped)"
        )
