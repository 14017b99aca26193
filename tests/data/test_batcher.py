import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flax_embed.data import Batcher, SlidingWindowDataset, create_dataloader, epoch_permutation
from flax_embed.tokenizer import encode
from tests.optional import requires

# The book's loader is torch code: only the tests that compare with it need torch.
needs_torch = requires("torch", extra="parity")


def book_batches(text, batch_size, max_length, stride, drop_last):
    from parity import torch_reference

    loader = torch_reference.create_dataloader_v1(
        text, batch_size=batch_size, max_length=max_length, stride=stride,
        shuffle=False, drop_last=drop_last,
    )  # fmt: skip
    return [(x.numpy(), y.numpy()) for x, y in loader]


def assert_same_batches(ours, book):
    ours = list(ours)
    assert len(ours) == len(book)
    for (x, y), (bx, by) in zip(ours, book, strict=True):
        assert x.dtype == y.dtype == np.int32
        np.testing.assert_array_equal(x, bx)
        np.testing.assert_array_equal(y, by)


# --- SlidingWindowDataset -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "max_length", "stride"),
    [(5, 4, 1), (5, 4, 4), (6, 4, 4), (100, 4, 4), (100, 7, 3), (100, 4, 50), (101, 10, 10)],
)
def test_len_is_the_books_range(n, max_length, stride):
    ds = SlidingWindowDataset(np.arange(n), max_length, stride)
    assert len(ds) == len(range(0, n - max_length, stride))
    assert len(ds) == (n - max_length - 1) // stride + 1


def test_window_holds_inputs_and_shifted_targets():
    ds = SlidingWindowDataset(np.arange(20, 40), max_length=4, stride=3)
    inputs, targets = ds[2]
    np.testing.assert_array_equal(inputs, [26, 27, 28, 29])
    np.testing.assert_array_equal(targets, [27, 28, 29, 30])
    assert inputs.dtype == targets.dtype == np.int32


def test_negative_index_counts_from_the_end():
    ds = SlidingWindowDataset(np.arange(30), max_length=4, stride=2)
    for i in range(1, len(ds) + 1):
        np.testing.assert_array_equal(ds[-i][0], ds[len(ds) - i][0])


@pytest.mark.parametrize("index", [13, -14, 100])
def test_index_out_of_range_raises_index_error(index):
    ds = SlidingWindowDataset(np.arange(30), max_length=4, stride=2)
    assert len(ds) == 13
    with pytest.raises(IndexError, match=f"{index} out of range for 13 windows"):
        ds[index]


def test_windows_are_a_view_not_copies():
    tokens = np.arange(1000, dtype=np.int32)
    ds = SlidingWindowDataset(tokens, max_length=16, stride=1)
    assert ds.token_ids is tokens
    assert np.shares_memory(ds._windows_WxT1, tokens)


def test_uint16_memmap_is_kept_and_widened(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(50, dtype=np.uint16).tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    ds = SlidingWindowDataset(tokens, max_length=4, stride=4)
    assert np.shares_memory(ds._windows_WxT1, tokens)
    inputs, _ = ds[1]
    assert inputs.dtype == np.int32
    np.testing.assert_array_equal(inputs, [4, 5, 6, 7])


def test_text_too_short_names_both_numbers():
    with pytest.raises(ValueError, match=r"4 tokens.*max_length=4.*at least 5"):
        SlidingWindowDataset(np.arange(4), max_length=4, stride=1)


@pytest.mark.parametrize("name", ["max_length", "stride"])
@pytest.mark.parametrize("value", [0, -3])
def test_window_options_below_one_raise(name, value):
    kwargs = {"max_length": 4, "stride": 4, name: value}
    with pytest.raises(ValueError, match=f"{name} must be at least 1, got {value}"):
        SlidingWindowDataset(np.arange(100), **kwargs)


@pytest.mark.parametrize(
    ("tokens", "error"),
    [(np.zeros(10, np.float32), TypeError), (np.zeros((2, 10), np.int32), ValueError)],
)
def test_tokens_must_be_a_rank_one_integer_array(tokens, error):
    with pytest.raises(error):
        SlidingWindowDataset(tokens, max_length=2, stride=1)


# --- Batcher ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("drop_last", "expected"), [(True, 3), (False, 4)])
def test_len_counts_batches(drop_last, expected):
    ds = SlidingWindowDataset(np.arange(31), max_length=2, stride=2)  # 15 windows
    batcher = Batcher(ds, batch_size=4, shuffle=False, drop_last=drop_last)
    assert len(batcher) == expected == len(list(batcher))


def test_short_last_batch_is_kept_without_drop_last():
    ds = SlidingWindowDataset(np.arange(31), max_length=2, stride=2)
    sizes = [x.shape[0] for x, _ in Batcher(ds, batch_size=4, shuffle=False, drop_last=False)]
    assert sizes == [4, 4, 4, 3]


@pytest.mark.parametrize("value", [0, -1])
def test_batch_size_below_one_raises(value):
    ds = SlidingWindowDataset(np.arange(31), max_length=2, stride=2)
    with pytest.raises(ValueError, match=f"batch_size must be at least 1, got {value}"):
        Batcher(ds, batch_size=value)


def test_a_batch_is_one_gather():
    class CountingDataset(SlidingWindowDataset):
        gathers = 0

        def gather(self, indices_B):
            type(self).gathers += 1
            return super().gather(indices_B)

        def __getitem__(self, index):
            raise AssertionError("Batcher read a window one at a time")

    batcher = Batcher(CountingDataset(np.arange(200), 4, 4), batch_size=8)
    assert len(list(batcher)) == len(batcher) == CountingDataset.gathers


def test_any_random_access_source_can_be_batched():
    class Pairs:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return [i, i + 1], [i + 1, i + 2]

    batches = list(Batcher(Pairs(), batch_size=2, shuffle=False, drop_last=False))
    np.testing.assert_array_equal(batches[0][0], [[0, 1], [1, 2]])
    np.testing.assert_array_equal(batches[2][1], [[5, 6]])
    assert batches[0][0].dtype == np.int32


def shuffled_epochs(seed, epochs=3):
    ds = SlidingWindowDataset(np.arange(400), max_length=3, stride=2)
    batcher = Batcher(ds, batch_size=4, shuffle=True, drop_last=False, seed=seed)
    return [np.concatenate([x[:, 0] // 2 for x, _ in batcher.iter_epoch(e)]) for e in range(epochs)]


def test_shuffle_visits_every_window_once_per_epoch():
    for starts in shuffled_epochs(seed=7):
        np.testing.assert_array_equal(np.sort(starts), np.arange(len(starts)))


def test_shuffle_order_differs_between_epochs():
    first, second, third = shuffled_epochs(seed=7)
    assert not np.array_equal(first, second) and not np.array_equal(second, third)


def test_shuffle_is_determined_by_the_seed():
    for a, b in zip(shuffled_epochs(seed=3), shuffled_epochs(seed=3), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(shuffled_epochs(seed=3)[0], shuffled_epochs(seed=4)[0])


def test_shuffled_epoch_follows_epoch_permutation():
    ds = SlidingWindowDataset(np.arange(100), max_length=3, stride=3)
    batcher = Batcher(ds, batch_size=5, shuffle=True, seed=11, drop_last=False)
    x = np.concatenate([x for x, _ in batcher.iter_epoch(1)])
    np.testing.assert_array_equal(x[:, 0] // 3, epoch_permutation(len(ds), 11, 1))


# --- create_dataloader against the book --------------------------------------------------------

GRID = [
    # (batch_size, max_length, stride, drop_last)
    *itertools.product([1, 3, 8], [1, 4, 16], [1, 4, 7], [True, False]),
    (4, 4, 9, False),  # stride > max_length: tokens between windows are skipped
    (2, 256, 128, True),  # the book's defaults
]


@pytest.mark.tokenizer
@pytest.mark.parametrize(("batch_size", "max_length", "stride", "drop_last"), GRID)
@needs_torch
def test_matches_the_book_on_the_bundled_sample(
    sample_text, batch_size, max_length, stride, drop_last
):
    options = dict(batch_size=batch_size, max_length=max_length, stride=stride, drop_last=drop_last)
    ours = create_dataloader(sample_text, shuffle=False, **options)
    assert_same_batches(ours, book_batches(sample_text, **options))


@pytest.mark.tokenizer
@pytest.mark.parametrize("drop_last", [True, False])
@needs_torch
def test_matches_the_book_on_the_verdict(verdict_text, drop_last):
    ours = create_dataloader(verdict_text, 8, 4, 4, shuffle=False, drop_last=drop_last)
    assert_same_batches(ours, book_batches(verdict_text, 8, 4, 4, drop_last))


@pytest.mark.tokenizer
def test_verdict_first_batch(verdict_text):
    inputs, targets = next(iter(create_dataloader(verdict_text, 8, 4, 4, shuffle=False)))
    assert inputs.shape == targets.shape == (8, 4)
    np.testing.assert_array_equal(inputs[:2], [[40, 367, 2885, 1464], [1807, 3619, 402, 271]])
    np.testing.assert_array_equal(targets[0], [367, 2885, 1464, 1807])


@pytest.mark.tokenizer
@needs_torch
def test_exactly_max_length_plus_one_tokens_is_one_window():
    text = "one two three four five"
    n = len(encode(text))
    ours = list(create_dataloader(text, 2, n - 1, 1, shuffle=False, drop_last=False))
    assert [x.shape for x, _ in ours] == [(1, n - 1)]
    assert_same_batches(ours, book_batches(text, 2, n - 1, 1, drop_last=False))


@pytest.mark.tokenizer
def test_text_too_short_for_one_window_raises():
    with pytest.raises(ValueError, match="text too short"):
        create_dataloader("Hi", batch_size=1, max_length=4, stride=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(min_size=1, max_size=300).filter(lambda t: len(encode(t)) >= 2),
    batch_size=st.integers(1, 6),
    max_length=st.integers(1, 12),
    stride=st.integers(1, 15),
    drop_last=st.booleans(),
)
@pytest.mark.tokenizer
@needs_torch
def test_matches_the_book_on_unseen_text(text, batch_size, max_length, stride, drop_last):
    max_length = min(max_length, len(encode(text)) - 1)
    ours = create_dataloader(
        text, batch_size, max_length, stride, shuffle=False, drop_last=drop_last
    )
    assert_same_batches(ours, book_batches(text, batch_size, max_length, stride, drop_last))


@pytest.mark.parametrize("change", [{"seed": 5}, {"shuffle": False}])
def test_a_replaced_copy_batches_as_a_fresh_batcher(change):
    ds = SlidingWindowDataset(np.arange(200), max_length=4, stride=4)
    batcher = Batcher(ds, batch_size=4, seed=0)
    list(batcher.iter_epoch(0))
    copy = dataclasses.replace(batcher, **change)
    fresh = Batcher(ds, batch_size=4, **{"seed": 0, **change})
    for (x, _), (fx, _) in zip(copy.iter_epoch(0), fresh.iter_epoch(0), strict=True):
        np.testing.assert_array_equal(x, fx)


@pytest.mark.parametrize("option", ["batch_size", "shuffle", "drop_last", "seed", "shard_index"])
def test_options_are_fixed_after_construction(option):
    batcher = Batcher(SlidingWindowDataset(np.arange(100), 4, 4), batch_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(batcher, option, 1)
