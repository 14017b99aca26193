"""``SlidingWindowDataset`` as a Grain data source: protocol, MapDataset, checkpointing."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from flax_embed.data import SlidingWindowDataset
from flax_embed.tokenizer import encode

grain = pytest.importorskip("grain")


@pytest.fixture(scope="module")
def dataset(sample_text):
    return SlidingWindowDataset(encode(sample_text), max_length=8, stride=8)


def pipeline(dataset, seed=0, epochs=1):
    return grain.MapDataset.source(dataset).shuffle(seed=seed).repeat(epochs).batch(16)


@pytest.mark.tokenizer
def test_grain_data_loader_reads_it_as_a_random_access_source(dataset):
    # What Grain's protocol is for: its DataLoader reads records by key through it.
    sampler = grain.samplers.IndexSampler(
        num_records=len(dataset),
        shard_options=grain.sharding.NoSharding(),
        shuffle=False,
        num_epochs=1,
        seed=0,
    )
    loader = grain.DataLoader(data_source=dataset, sampler=sampler, worker_count=0)
    records = list(loader)
    assert len(records) == len(dataset)
    inputs, targets = dataset.gather(np.arange(len(dataset)))
    np.testing.assert_array_equal(np.stack([x for x, _ in records]), inputs)
    np.testing.assert_array_equal(np.stack([y for _, y in records]), targets)


@pytest.mark.tokenizer
def test_repr_names_the_windows(dataset):
    assert repr(dataset) == (
        f"SlidingWindowDataset(num_tokens={dataset.token_ids.shape[0]}, max_length=8, "
        f"stride=8, num_windows={len(dataset)})"
    )


@pytest.mark.tokenizer
def test_map_dataset_shuffles_and_batches_every_window_once(dataset):
    batches = list(pipeline(dataset))
    assert all(x.shape == y.shape == (16, 8) for x, y in batches[:-1])
    inputs = np.concatenate([x for x, _ in batches])
    targets = np.concatenate([y for _, y in batches])
    expected = dataset.gather(np.arange(len(dataset)))
    order = np.lexsort(inputs.T[::-1])
    expected_order = np.lexsort(expected[0].T[::-1])
    np.testing.assert_array_equal(inputs[order], expected[0][expected_order])
    np.testing.assert_array_equal(targets[order], expected[1][expected_order])
    assert not np.array_equal(inputs, expected[0])  # shuffled


@pytest.mark.tokenizer
def test_the_same_seed_gives_the_same_batches(dataset):
    for (xa, _), (xb, _) in zip(pipeline(dataset, seed=5), pipeline(dataset, seed=5), strict=True):
        np.testing.assert_array_equal(xa, xb)


@pytest.mark.tokenizer
@pytest.mark.parametrize("k", [0, 1, 4, 7])
def test_grain_iterator_checkpoint_resumes_exactly(dataset, k):
    uninterrupted = list(pipeline(dataset, epochs=2))
    it = iter(pipeline(dataset, epochs=2))
    before = list(itertools.islice(it, k))
    state = json.loads(json.dumps(it.get_state()))
    resumed = iter(pipeline(dataset, epochs=2))
    resumed.set_state(state)
    got = before + list(resumed)
    assert len(got) == len(uninterrupted) == -(-2 * len(dataset) // 16)  # batches span epochs
    for (x, y), (ux, uy) in zip(got, uninterrupted, strict=True):
        np.testing.assert_array_equal(x, ux)
        np.testing.assert_array_equal(y, uy)


def test_importing_flax_embed_does_not_import_grain():
    code = "import sys, flax_embed; assert 'grain' not in sys.modules, 'grain imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
