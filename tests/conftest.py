"""Shared fixtures: the shipped SmolLM2 tokenizer, a tiny Llama built in-process around it, and
small RecBole-format datasets written to disk so the real importers read them."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The shipped SmolLM2-135M-Instruct as a HF folder (converted from its GGUF once per cache)."""
    from earec_core.backbone import default_llm_dir

    return default_llm_dir()


@pytest.fixture(scope="session")
def tokenizer(smol_dir):
    from earec_core.backbone import load_tokenizer

    return load_tokenizer(smol_dir)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-layer, 64-wide Llama with SmolLM2's tokenizer and chat template, saved as a local HF
    folder so the real loading path (``--llm PATH``) is what the tests exercise."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def write_atomic_dataset(root: Path, name: str = "toy", n_users: int = 60, n_items: int = 60, seed: int = 0,
                         titles: dict[str, str] | None = None) -> Path:
    """A RecBole atomic dataset with a learnable pattern (users walk through item blocks)."""
    rng = random.Random(seed)
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(n_users):
        start = rng.randrange(n_items)
        for t in range(rng.randint(7, 12)):
            lines.append(f"u{u}\ti{(start + t) % n_items}\t4\t{1000 + 10 * t + u}")
    (d / f"{name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = ["item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq"]
    for i in range(n_items):
        title = (titles or {}).get(f"i{i}", f"Movie number {i}")
        items.append(f"i{i}\t{title}\t{1980 + i}\t{GENRES[i % len(GENRES)]}")
    (d / f"{name}.item").write_text("\n".join(items) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def make_dataset():
    """The :func:`write_atomic_dataset` factory, for tests that need their own variant."""
    return write_atomic_dataset


@pytest.fixture
def toy_dataset_dir(tmp_path) -> Path:
    return write_atomic_dataset(tmp_path)


@pytest.fixture(scope="session")
def ml100k():
    """MovieLens-100k from the recbole wheel, 5-core, split."""
    from earec_core.data import load_dataset

    return load_dataset()
