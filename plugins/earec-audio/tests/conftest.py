"""Fixtures: real WAV files written with numpy + ``wave`` (tones/chirps at several sample rates,
channel counts and bit depths, plus broken files), tied to the items of a small RecBole dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from wavgen import write_audio_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def audio_dataset_dir(tmp_path_factory) -> Path:
    return write_audio_dataset(tmp_path_factory.mktemp("audio-data"))


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama around the shipped SmolLM2 tokenizer (as the core's tests)."""
    from earec_core.backbone import default_llm_dir, load_tokenizer
    from earec_core.testing import tiny_llm

    return tiny_llm(tmp_path_factory.mktemp("tiny-llm"), load_tokenizer(default_llm_dir()))


try:  # these tests need the distribution installed (scripts/setup.sh does it): entry point included
    import importlib.metadata

    importlib.metadata.distribution("earec-audio")
except importlib.metadata.PackageNotFoundError:
    collect_ignore_glob = ["test_*.py"]
    import warnings

    warnings.warn("earec-audio is not installed (pip install -e ./plugins/earec-audio); its tests are skipped")
