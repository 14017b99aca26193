"""Writes docs/figures/packed_batch.png: segment ids and positions of a packed batch.

    PYTHONPATH=. python docs/packing_figures.py

Eight rows of 64 next-token pairs, first-fit packed (8 bins) from documents of real
GPT-2 ids (the bundled sample text's sentences, in the story's order), shown as two
heat maps: the segment id of each cell (0 = padding, white) and its position
(restarting at 0 per document).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from flax_embed.data import PackedDataset, sample_text
from flax_embed.tokenizer import encode

OUT = Path(__file__).resolve().parent / "figures" / "packed_batch.png"


def packed_batch(rows: int = 8, seq_len: int = 64) -> dict[str, np.ndarray]:
    text = sample_text().replace("\n", " ")
    docs = [encode(s.strip() + ".") for s in text.split(". ") if s.strip()]
    ds = PackedDataset(docs, seq_len, method="first_fit", num_packing_bins=rows)
    return ds.gather(np.arange(min(rows, len(ds))))


def main() -> None:
    batch = packed_batch()
    seg, pos = batch["inputs_segment_ids"], batch["inputs_positions"]
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.2), constrained_layout=True)
    seg_masked = np.ma.masked_equal(seg, 0)
    cmap = plt.get_cmap("tab20").copy()
    cmap.set_bad("white")
    im0 = axes[0].imshow(seg_masked, cmap=cmap, vmin=0.5, vmax=20.5, aspect="auto",
                         interpolation="nearest")  # fmt: skip
    axes[0].set_title("inputs_segment_ids (white: padding, 0)")
    fig.colorbar(im0, ax=axes[0], label="segment id")
    pos_masked = np.ma.masked_where(seg == 0, pos)
    viridis = plt.get_cmap("viridis").copy()
    viridis.set_bad("white")
    im1 = axes[1].imshow(pos_masked, cmap=viridis, aspect="auto", interpolation="nearest")
    axes[1].set_title("inputs_positions (restart at 0 for each document)")
    fig.colorbar(im1, ax=axes[1], label="position")
    for ax in axes:
        ax.set_ylabel("row")
        ax.set_xlabel("cell (next-token pair)")
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
