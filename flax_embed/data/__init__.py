"""The data pipeline: text → GPT-2 ids → token files → sliding windows → batches.

Each stage is a NumPy object with no JAX in it, so it runs in any process
(Grain workers included) and gives the same batches on every machine.
"""

from flax_embed.data.batcher import Batcher, create_dataloader
from flax_embed.data.corpus import CorpusError
from flax_embed.data.iterator import BatchIterator
from flax_embed.data.packing import PACKING_METHODS, Documents, PackedDataset
from flax_embed.data.parallel_tokenize import encode_parallel, iter_encode_parallel
from flax_embed.data.samples import sample_text
from flax_embed.data.shards import tokenize_corpus
from flax_embed.data.shuffle import epoch_permutation, index_shuffle
from flax_embed.data.sources import SlidingWindowDataset, TokenFileDataset
from flax_embed.data.token_files import (
    TokenFileError,
    TokenFileWriter,
    read_token_file,
    write_token_file,
)
from flax_embed.data.windows import Batch, WindowSource

__all__ = [
    "PACKING_METHODS",
    "Batch",
    "BatchIterator",
    "Batcher",
    "CorpusError",
    "Documents",
    "PackedDataset",
    "SlidingWindowDataset",
    "TokenFileDataset",
    "TokenFileError",
    "TokenFileWriter",
    "WindowSource",
    "create_dataloader",
    "encode_parallel",
    "epoch_permutation",
    "index_shuffle",
    "iter_encode_parallel",
    "read_token_file",
    "sample_text",
    "tokenize_corpus",
    "write_token_file",
]
