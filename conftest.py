"""Repository-wide pytest setup: the GPT-2 BPE files, probed once.

Tests, docstring examples (``--doctest-modules`` over ``flax_embed``) and the
documentation's examples (``tests/test_docs.py``) need GPT-2's BPE files for
anything that tokenizes. Each of them carries the ``tokenizer`` marker: on the test,
from ``TOKENIZER_TESTS`` below (doctests included), or, for a documentation block,
from its ``<!-- test: tokenizer -->`` comment. The files are probed once per
session; when they cannot be loaded (offline, no ``TIKTOKEN_CACHE_DIR``), the marked
tests are skipped up front, with a reason that says how to provide the files. A test
is never turned into a skip after it ran: a failure is a failure.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED_TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken_cache"
PROBE_TIMEOUT_S = 30

# Run as a script by tests/distributed/test_multiprocess.py; importing it (as
# --doctest-modules would) sets XLA_FLAGS for this process and its children.
collect_ignore = [
    "tests/distributed/worker.py",
    # Run by tests/distributed/test_sharding.py in a process with 8 forced CPU devices.
    "tests/distributed/eight_devices",
]

# CI sets TIKTOKEN_CACHE_DIR; a developer's checkout beside shared/ works without it.
if SHARED_TIKTOKEN_CACHE.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED_TIKTOKEN_CACHE))

# The Ray tests start local clusters; Ray would otherwise report usage statistics over the
# network when a cluster starts. Tests talk to this machine only.
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@functools.cache
def tokenizer_missing() -> str | None:
    """``None`` when GPT-2's BPE files load; else why not and how to provide them.

    A download that neither finishes nor fails within ``PROBE_TIMEOUT_S`` (a network
    that drops packets) counts as missing, and ``FLAX_EMBED_BPE_DIR`` is then pointed
    at an empty folder so that later attempts fail at once instead of hanging.
    """
    from flax_embed.tokenizer import BPE_DIR_ENV, TokenizerUnavailableError, gpt2_tokenizer

    outcome: list[str | None] = []

    def load() -> None:
        try:
            gpt2_tokenizer()
            outcome.append(None)
        except TokenizerUnavailableError as e:
            outcome.append(str(e))

    probe = threading.Thread(target=load, daemon=True)
    probe.start()
    probe.join(PROBE_TIMEOUT_S)
    if outcome:
        return outcome[0]
    os.environ[BPE_DIR_ENV] = tempfile.mkdtemp(prefix="no-gpt2-bpe-")
    return (
        f"tiktoken's download of GPT-2's BPE files did not finish in {PROBE_TIMEOUT_S} s; "
        "set TIKTOKEN_CACHE_DIR to a tiktoken cache holding them, or FLAX_EMBED_BPE_DIR to "
        "a folder holding encoder.json and vocab.bpe"
    )


def pytest_report_header(config) -> str:
    missing = tokenizer_missing()
    if missing is None:
        return "GPT-2 BPE files: found"
    return f"GPT-2 BPE files: NOT FOUND; tests that need them are skipped. {missing}"


# The tests and docstring examples that tokenize (found by running the suite offline),
# by module; conftest marks them `tokenizer`. A new one: `@pytest.mark.tokenizer` on
# the test, or its name here (doctests: the object's dotted name).
TOKENIZER_TESTS = {
    "flax_embed/data/parallel_tokenize.py": {
        "flax_embed.data.parallel_tokenize.encode_parallel",
    },
    "tests/cli/test_embed.py": {
        "test_a_save_that_fails_halfway_keeps_the_old_file",
        "test_bad_file_is_one_line_and_exit_code_2",
        "test_embed_runs_the_seed_on_the_bundled_sample",
        "test_save_into_a_missing_folder_is_one_line",
    },
    "tests/cli/test_tokenize.py": {
        "test_decoding_errors_are_worded_as_read_text_words_them",
        "test_documents_are_joined_by_endoftext",
        "test_no_progress_bar_on_small_inputs",
        "test_the_installed_command",
        "test_unreadable_input_is_one_line_exit_2_and_no_output",
    },
    "tests/data/test_batcher.py": {
        "test_exactly_max_length_plus_one_tokens_is_one_window",
        "test_matches_the_book_on_the_bundled_sample",
        "test_matches_the_book_on_the_verdict",
        "test_matches_the_book_on_unseen_text",
        "test_text_too_short_for_one_window_raises",
        "test_verdict_first_batch",
    },
    "tests/data/test_corpus.py": {
        "test_a_saved_dataset_is_read_without_the_datasets_package",
        "test_empty_inputs",
        "test_endoftext_joins_documents_tokenized_apart",
        "test_field_option",
        "test_hugging_face_save_to_disk",
        "test_jsonl_byte_ranges_cut_at_lines",
        "test_jsonl_formats",
        "test_mixed_folder_and_glob_in_sorted_order",
        "test_no_eot_joins_by_nothing",
        "test_parquet_by_row_groups",
        "test_text_files_are_one_document_each_with_newlines_translated",
        "test_without_endoftext_documents_do_merge",
    },
    "tests/data/test_grain.py": {
        "test_grain_iterator_checkpoint_resumes_exactly",
        "test_map_dataset_shuffles_and_batches_every_window_once",
        "test_satisfies_the_random_access_data_source_protocol",
        "test_the_same_seed_gives_the_same_batches",
    },
    "tests/data/test_iterator.py": {
        "test_create_dataloader_takes_shards",
    },
    "tests/data/test_parallel_tokenize.py": {
        "test_a_cut_after_whitespace_would_change_the_ids",
        "test_default_workers_is_the_core_count",
        "test_edge_texts",
        "test_every_safe_boundary_keeps_the_ids",
        "test_long_text_uses_many_chunks_and_matches",
        "test_non_str_input",
        "test_parallel_ids_equal_serial_ids",
        "test_streamed_pieces_cut_anywhere_equal_one_encode",
    },
    "tests/data/test_ray_tokenize.py": {
        "test_a_failed_ray_job_leaves_no_manifest",
        "test_a_task_whose_worker_dies_is_retried",
        "test_ray_output_equals_the_local_run_shard_for_shard",
    },
    "tests/data/test_shards.py": {
        "test_a_rerun_skips_valid_shards_and_redoes_a_corrupt_one",
        "test_a_shard_that_disagrees_with_the_manifest_is_named",
        "test_an_interrupted_job_resumes",
        "test_bad_input_leaves_nothing",
        "test_from_files_equals_one_dataset_over_the_concatenation",
        "test_from_files_with_a_manifest_and_the_batcher",
        "test_no_eot",
        "test_raw_bin_needs_an_explicit_dtype",
        "test_resume_after_an_interrupted_shard_stage",
        "test_segmenting_does_not_change_the_bytes",
        "test_shards_are_the_ids_cut_every_n_tokens",
    },
    "tests/data/test_token_files.py": {
        "test_a_failed_write_keeps_the_old_file",
        "test_bin_sidecar_says_dtype_vocab_and_count",
        "test_bin_without_sidecar",
        "test_fingerprint_equals_the_in_memory_datasets",
        "test_from_file_batches_equal_in_memory_batches",
        "test_from_file_does_not_copy_the_ids",
        "test_int32_npy_from_encode_is_readable",
        "test_npy_is_a_plain_numpy_file",
        "test_npy_with_trailing_bytes",
        "test_pickle_reopens_by_path_without_copying",
        "test_round_trip",
        "test_streamed_writes_equal_one_write",
        "test_truncated_npy",
    },
    "tests/distributed/test_sharding.py": {
        "test_on_eight_cpu_devices",
    },
    "tests/faults/test_concurrency.py": {
        "test_token_file_truncated_while_mapped_is_an_error_not_sigbus",
    },
    "tests/layers/test_linen.py": {
        "test_seed_batch_from_the_real_loader",
    },
    "tests/parity/test_checks.py": {
        "test_check_passes",
    },
    "tests/parity/test_linen_nnx.py": {
        "test_attend_rows",
        "test_every_row_passes",
        "test_forward_rows_are_bit_identical_in_float32",
    },
    "tests/parity/test_report.py": {
        "test_table_has_the_header_and_a_row_per_check",
    },
    "tests/test_convert.py": {
        "test_boxed_params_convert",
        "test_saved_file_loads_into_torch_module_strictly",
        "test_torch_saved_whole_model_loads",
        "test_whole_model_state_dict_gives_the_models_own_embeddings",
    },
    "tests/test_tokenizer.py": {
        "test_encode_allows_endoftext",
        "test_encode_returns_int32_ids_as_the_book",
        "test_gpt2_tokenizer_is_tiktokens_gpt2",
        "test_verdict_has_5145_tokens",
    },
}


def pytest_collection_modifyitems(config, items) -> None:
    """``@pytest.mark.tokenizer`` tests (and ``TOKENIZER_TESTS``) are skipped up front offline.

    A test that needs GPT-2's BPE files is marked, and skipped before it runs when they
    cannot be loaded; a test never becomes a skip after it ran.
    """
    for item in items:
        path = Path(item.fspath).relative_to(REPO).as_posix()
        if getattr(item, "originalname", item.name) in TOKENIZER_TESTS.get(path, ()):
            item.add_marker(pytest.mark.tokenizer)
    if not any(item.get_closest_marker("tokenizer") for item in items):
        return
    missing = tokenizer_missing()
    if missing is None:
        return
    skip = pytest.mark.skip(reason=f"needs GPT-2's BPE files: {missing}")
    for item in items:
        if item.get_closest_marker("tokenizer"):
            item.add_marker(skip)
