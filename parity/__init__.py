"""The PyTorch side of flax-embed's parity checks, and the comparison.

* ``parity.torch_reference``: the book's chapter-2 code in PyTorch (the embedding
  pair and ``GPTDatasetV1`` + ``create_dataloader_v1``), written from the book;
* the comparison of the two frameworks, run as ``python -m parity``.
"""
