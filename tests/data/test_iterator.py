"""Resumable, deterministic, sharded iteration: ``Batcher`` + ``BatchIterator``."""

import itertools
import json

import jax
import numpy as np
import pytest

from flax_embed.data import Batcher, SlidingWindowDataset, create_dataloader, fingerprint
from flax_embed.data import iterator as iterator_module

TOKENS = np.random.default_rng(0).integers(0, 50257, size=404).astype(np.int32)


def make_batcher(tokens=TOKENS, max_length=4, stride=3, **options):
    options = {"batch_size": 8, "seed": 7, "shard_index": 0, "shard_count": 1, **options}
    return Batcher(SlidingWindowDataset(tokens, max_length, stride), **options)


def as_rows(batches):
    """All inputs then all targets, each ``(total_windows, T)``, from a list of batches."""
    if not batches:
        return np.zeros((0, 4), np.int32), np.zeros((0, 4), np.int32)
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


# --- resumable iteration ------------------------------------------------------------------


@pytest.mark.parametrize(("shuffle", "drop_last"), [(True, True), (False, True), (True, False)])
def test_interrupt_at_every_k_then_resume_equals_the_uninterrupted_run(shuffle, drop_last):
    num_epochs = 3
    uninterrupted = list(make_batcher(shuffle=shuffle, drop_last=drop_last).iterate(num_epochs))
    assert len(uninterrupted) == 3 * (16 if drop_last else 17)
    for k in range(len(uninterrupted) + 1):
        it = make_batcher(shuffle=shuffle, drop_last=drop_last).iterate(num_epochs)
        before = list(itertools.islice(it, k))
        state = json.loads(json.dumps(it.get_state()))  # as a checkpoint stores it
        resumed = make_batcher(shuffle=shuffle, drop_last=drop_last).iterate(num_epochs)
        resumed.set_state(state)
        assert_same(before + list(resumed), uninterrupted)


def test_resumed_run_repeats_and_loses_no_window():
    batcher = make_batcher(drop_last=False)
    it = batcher.iterate(1)
    first = list(itertools.islice(it, 5))
    resumed = make_batcher(drop_last=False).iterate(1)
    resumed.set_state(it.get_state())
    inputs, _ = as_rows(first + list(resumed))
    expected = np.stack([batcher.dataset[i][0] for i in range(len(batcher.dataset))])
    # every window exactly once: same multiset of rows as the dataset
    assert inputs.shape == expected.shape
    np.testing.assert_array_equal(np.unique(inputs, axis=0), np.unique(expected, axis=0))
    assert len(np.unique(inputs, axis=0)) == len(expected)


def test_state_is_small_json_with_version_seed_epoch_position_fingerprint():
    it = make_batcher().iterate()
    next(it)
    state = it.get_state()
    assert json.loads(json.dumps(state)) == state
    assert (
        state["version"] == 2
        and state["seed"] == 7
        and state["epoch"] == 0
        and state["position"] == 1
    )
    assert set(state["fingerprint"]) == {"dataset", "batch_size", "shuffle", "drop_last"}
    assert len(json.dumps(state)) < 300


def test_after_the_last_batch_of_an_epoch_the_state_points_at_the_next_epoch():
    batcher = make_batcher()
    it = batcher.iterate()
    list(itertools.islice(it, len(batcher)))
    assert (it.get_state()["epoch"], it.get_state()["position"]) == (1, 0)


def test_each_epoch_is_reshuffled_and_visits_every_window_once():
    batcher = make_batcher()
    n = len(batcher.dataset)
    orders = [
        np.concatenate([batcher.batch_windows(e, b) for b in range(len(batcher))]) for e in range(3)
    ]
    for order in orders:
        assert len(set(order.tolist())) == len(order) == n - n % batcher.batch_size
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    epochs = list(make_batcher().iterate(3))
    per_epoch = len(batcher)
    assert not np.array_equal(epochs[0][0], epochs[per_epoch][0])


def test_iter_runs_epoch_0_every_time():
    batcher = make_batcher()
    first, second = list(batcher), list(batcher)
    assert_same(first, list(batcher.iter_epoch(0)))
    assert_same(second, first)


def test_iterating_leaves_the_batcher_unchanged():
    batcher = make_batcher()
    before = dict(vars(batcher))
    it = batcher.iterate(3)
    list(itertools.islice(it, 20))
    make_batcher().iterate(3).set_state(it.get_state())
    list(batcher), list(batcher.iter_epoch(2)), batcher.fingerprint()
    assert vars(batcher) == before and all(vars(batcher)[k] is v for k, v in before.items())


def test_iterate_starts_at_first_epoch():
    batcher = make_batcher()
    expected = [*batcher.iter_epoch(3), *batcher.iter_epoch(4)]
    assert_same(list(batcher.iterate(2, first_epoch=3)), expected)


@pytest.mark.parametrize("block", [1, 5, 8, 13])
def test_iterator_blocks_of_window_indices_give_the_direct_batches(monkeypatch, block):
    # The iterator computes window indices a block of positions at a time; whatever the
    # block size, its batches are the ones local_batch computes directly.
    monkeypatch.setattr(iterator_module, "_WINDOW_BLOCK", block)
    batcher = make_batcher(drop_last=False, shard_index=1, shard_count=2)
    direct = [batcher.local_batch(e, i) for e in range(2) for i in range(len(batcher))]
    assert_same(list(batcher.iterate(2)), direct)


def test_a_one_epoch_iterator_resumes_within_its_epoch():
    batcher = make_batcher()
    it = iter(batcher)
    next(it)
    again = batcher.iter_epoch(0)
    again.set_state(it.get_state())
    assert_same(list(again), list(it))


def test_state_restores_on_the_same_tokens_from_a_uint16_token_file(tmp_path):
    np.save(tmp_path / "tokens.npy", TOKENS.astype(np.uint16))
    it = make_batcher().iterate()
    next(it)
    dataset = SlidingWindowDataset.from_file(tmp_path / "tokens.npy", max_length=4, stride=3)
    from_file = Batcher(dataset, batch_size=8, seed=7, shard_count=1).iterate()
    from_file.set_state(it.get_state())
    assert_same([next(from_file)], [next(it)])


# --- a state from elsewhere is refused ------------------------------------------------------

OTHER_TOKENS = TOKENS.copy()
OTHER_TOKENS[200] += 1


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"tokens": OTHER_TOKENS}, "another dataset or other options: dataset"),
        ({"tokens": TOKENS[:-3]}, "dataset"),
        ({"max_length": 5}, "dataset"),
        ({"stride": 2}, "dataset"),
        ({"batch_size": 4}, "batch_size 8 .state. != 4 .here."),
        ({"shuffle": False}, "shuffle True .state. != False"),
        ({"drop_last": False}, "drop_last"),
        ({"seed": 8}, "seed 7, but this loader has seed 8"),
    ],
)
def test_state_from_another_dataset_or_options_raises(other, message):
    it = make_batcher().iterate()
    next(it)
    state = json.loads(json.dumps(it.get_state()))
    elsewhere = make_batcher(**other).iterate()
    with pytest.raises(ValueError, match=message):
        elsewhere.set_state(state)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epoch": 5}, r"epoch 5, outside this iterator's epochs \(epoch 0 to epoch 1\)"),
        ({"position": 16}, r"position 16 is outside \[0, 16\)"),
        ({"position": -1}, "position -1"),
        ({"epoch": "0"}, "'epoch' must be an int"),
    ],
)
def test_state_outside_the_iterator_raises(change, message):
    it = make_batcher().iterate(2)
    state = {**it.get_state(), **change}
    with pytest.raises(ValueError, match=message):
        make_batcher().iterate(2).set_state(state)


@pytest.mark.parametrize(("version", "shown"), [(None, "1"), (1, "1"), (3, "3"), ("2", "'2'")])
def test_a_state_of_another_version_is_refused_naming_it(version, shown):
    # Version 1 states (no "version" key) index the earlier PCG64 order: never misread.
    it = make_batcher().iterate()
    next(it)
    state = it.get_state()
    if version is None:
        del state["version"]
    else:
        state["version"] = version
    with pytest.raises(ValueError, match=f"iterator state version {shown} cannot be restored"):
        make_batcher().iterate().set_state(state)


@pytest.mark.parametrize("state", [{}, {"epoch": 0}, [1, 2], None])
def test_not_a_state_raises(state):
    with pytest.raises(ValueError, match="not an iterator state"):
        make_batcher().iterate().set_state(state)


def test_fingerprint_of_a_large_array_samples_blocks_yet_sees_a_changed_block(monkeypatch):
    monkeypatch.setattr(fingerprint, "FULL_HASH_MAX_TOKENS", 1000)
    tokens = np.arange(2_000_000, dtype=np.int32) % 50257

    def fp(t):
        return fingerprint.dataset_fingerprint(SlidingWindowDataset(t, 4, 4))

    changed_first, changed_last = tokens.copy(), tokens.copy()
    changed_first[10] += 1
    changed_last[-1] += 1
    assert len({fp(tokens), fp(changed_first), fp(changed_last), fp(tokens[:-1])}) == 4
    assert fp(tokens) == fp(tokens.astype(np.uint16))


def test_a_source_without_tokens_is_fingerprinted_by_type_and_length():
    class Pairs:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return [i, i + 1], [i + 1, i + 2]

    it = Batcher(Pairs(), batch_size=2, shuffle=False).iterate(1)
    next(it)
    resumed = Batcher(Pairs(), batch_size=2, shuffle=False).iterate(1)
    resumed.set_state(it.get_state())
    np.testing.assert_array_equal(next(resumed)[0], [[2, 3], [3, 4]])


# --- sharding -------------------------------------------------------------------------------


@pytest.mark.parametrize("shard_count", [2, 4, 8])
def test_shards_stack_into_the_one_process_batch(shard_count):
    whole = list(make_batcher().iterate(2))
    shards = [
        list(make_batcher(shard_index=i, shard_count=shard_count).iterate(2))
        for i in range(shard_count)
    ]
    for b, (x, y) in enumerate(whole):
        parts = [shard[b] for shard in shards]
        assert all(p[0].shape == (8 // shard_count, 4) for p in parts)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)


@pytest.mark.parametrize("shard_count", [1, 2, 4])
def test_shards_are_disjoint_and_cover_the_epoch(shard_count):
    batchers = [make_batcher(shard_index=i, shard_count=shard_count) for i in range(shard_count)]
    read = [
        np.concatenate([b.shard_windows(0, k) for k in range(len(b))]).tolist() for b in batchers
    ]
    union = set().union(*map(set, read))
    assert sum(map(len, read)) == len(union)  # disjoint
    epoch = np.concatenate([batchers[0].batch_windows(0, k) for k in range(len(batchers[0]))])
    assert union == set(epoch.tolist())


def test_a_state_saved_on_one_process_resumes_on_two():
    it = make_batcher().iterate()
    before = [next(it) for _ in range(3)]
    state = it.get_state()
    rest = []
    for i in range(2):
        shard = make_batcher(shard_index=i, shard_count=2).iterate()
        shard.set_state(state)
        assert shard.get_state() == state  # the same state on every process
        rest.append([next(shard) for _ in range(20)])
    whole_rest = [next(it) for _ in range(20)]
    joined = [
        (np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]))
        for a, b in zip(*rest, strict=True)
    ]
    assert_same(joined, whole_rest)
    assert len(before) == 3


def test_an_even_short_last_batch_is_split_over_shards():
    # 134 windows, batch 8: a last batch of 6 splits as 3 + 3
    whole = list(make_batcher(drop_last=False).iter_epoch(0))
    halves = [
        list(make_batcher(drop_last=False, shard_index=i, shard_count=2).iter_epoch(0))
        for i in range(2)
    ]
    assert [len(x) for x, _ in halves[0]][-1] == 3
    last = np.concatenate([halves[0][-1][0], halves[1][-1][0]])
    np.testing.assert_array_equal(last, whole[-1][0])


def test_shards_default_to_the_jax_process():
    batcher = Batcher(SlidingWindowDataset(TOKENS, 4, 3), batch_size=8)
    assert (batcher.shard_index, batcher.shard_count) == (jax.process_index(), 1)


@pytest.mark.tokenizer
def test_create_dataloader_takes_shards():
    text = "It had always been my fate to have my pictures hung well. " * 20
    whole = create_dataloader(text, batch_size=4, max_length=4, stride=4, shard_count=1)
    half = create_dataloader(
        text, batch_size=4, max_length=4, stride=4, shard_index=1, shard_count=2
    )
    np.testing.assert_array_equal(next(iter(half))[0], next(iter(whole))[0][2:])


@pytest.mark.parametrize(
    ("shards", "error", "message"),
    [
        ({"shard_count": 0}, ValueError, "shard_count must be at least 1, got 0"),
        ({"shard_count": -2}, ValueError, "shard_count must be at least 1, got -2"),
        ({"shard_index": 2, "shard_count": 2}, ValueError, "shard_index=2 is out of range"),
        ({"shard_index": -1, "shard_count": 2}, ValueError, "shard_index must be at least 0"),
        ({"shard_index": 0.5, "shard_count": 2}, TypeError, "shard_index must be an int"),
        ({"shard_count": 3}, ValueError, "batch_size=8 must be a multiple of shard_count=3"),
    ],
)
def test_bad_shards_raise(shards, error, message):
    with pytest.raises(error, match=message):
        make_batcher(**{"shard_index": 0, **shards})


def test_more_shards_than_windows_raises():
    ds = SlidingWindowDataset(np.arange(13), max_length=4, stride=4)  # 3 windows
    with pytest.raises(ValueError, match="shard_count=4 exceeds the 3 windows"):
        Batcher(ds, batch_size=4, shard_index=0, shard_count=4)


def test_an_uneven_short_last_batch_over_shards_raises():
    # 134 windows, batch 8: the last batch of 6 does not split over 4 shards
    with pytest.raises(ValueError, match=r"last batch of 6 windows.*shard_count=4"):
        make_batcher(drop_last=False, shard_count=4)
