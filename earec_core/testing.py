"""Contract tests for modality plugins: a pytest plugin and a class to subclass.

Plugin authors get the checks the core relies on in one line::

    # tests/test_contract.py of a plugin package
    import pytest
    from earec_core.testing import ModalityContract

    class TestAudioContract(ModalityContract):
        modality_name = "audio"

        @pytest.fixture(scope="class")
        def modality(self, tmp_path_factory):
            ...  # an instance ready to use (prepare()d or load()ed)

        @pytest.fixture(scope="class")
        def items(self, modality):
            ...  # a few earec_core.data.Item objects that HAVE input for the modality

        @pytest.fixture(scope="class")
        def item_without_input(self):
            ...  # an Item lacking the modality's input (fragment must return None)

or, in a top-level ``conftest.py``, ``pytest_plugins = ["earec_core.testing"]`` to also get the
``earec_tiny_tokenizer`` / ``earec_tiny_llm_dir`` fixtures.

Checks: registration through the plugin manager; encoder output ``(n, k, d_enc)`` float32 with
``k == tokens_per_item`` and ``d_enc == feature_dim``; determinism and batch independence in
eval mode; projector ``d_enc -> d_llm``; the placeholder appears in the fragment once per slot
item and the tokenised prompt has ``k`` slot positions per slot; splicing writes
``projector(encode(x))`` exactly there; missing input returns ``None``; projector save/load
round trip through safetensors (the core's own loader).  Encoder/projector checks are skipped
for text-like modalities (``placeholder = None``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from . import plugins
from .aligned import load_projector
from .errors import EarecError
from .modality import Modality
from .prompt import PromptBuilder, collate, splice

TINY_SPECIALS = ["<pad>", "<eos>", "<bos>"]


@functools.lru_cache(maxsize=1)
def _tiny_tokenizer_object():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=TINY_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = ["Here is what we know about an item.", "What is the item's title?", "Movie number 12 Action Comedy"]
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    return tok


def tiny_tokenizer():
    """A byte-level BPE tokenizer (~400 tokens) built in-process, with pad/EOS, left padding and
    no chat template (prompts use the plain ``System/User/Assistant`` layout)."""
    from transformers import PreTrainedTokenizerFast

    from tokenizers import Tokenizer

    fresh = Tokenizer.from_str(_tiny_tokenizer_object().to_str())
    tok = PreTrainedTokenizerFast(tokenizer_object=fresh, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")
    tok.padding_side = "left"
    return tok


def tiny_llm(path: str | Path, tokenizer, *, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a tiny random Llama (``hidden_size`` wide) plus ``tokenizer`` as a local HF folder
    that ``earec --llm PATH`` loads like any backbone."""
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def earec_tiny_tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def earec_tiny_llm_dir(tmp_path_factory, earec_tiny_tokenizer):
    return tiny_llm(tmp_path_factory.mktemp("earec-tiny-llm"), earec_tiny_tokenizer)


class ModalityContract:
    """Subclass as ``Test…`` and provide the ``modality``, ``items`` and ``item_without_input``
    fixtures (and ``modality_name``).  Override ``plugin`` (an object with hookimpls) to have the
    registration check register it in-process instead of finding it through entry points."""

    modality_name: str = ""
    plugin: object | None = None
    llm_width: int = 32

    # -- fixtures an author may override -----------------------------------------------------------
    @pytest.fixture(scope="class")
    def contract_tokenizer(self):
        return tiny_tokenizer()

    @pytest.fixture(scope="class")
    def modality(self) -> Modality:
        pytest.fail("ModalityContract: define a `modality` fixture returning a ready-to-use instance")

    @pytest.fixture(scope="class")
    def items(self):
        pytest.fail("ModalityContract: define an `items` fixture (Items that have input for the modality)")

    @pytest.fixture(scope="class")
    def item_without_input(self):
        pytest.fail("ModalityContract: define an `item_without_input` fixture")

    # -- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _needs_encoder(modality: Modality) -> None:
        if modality.placeholder is None:
            pytest.skip(f"{modality.name!r} is text-like (placeholder None): no encoder/projector")

    @staticmethod
    def _slot_ids(modality, items) -> list[str]:
        ids: list[str] = []
        for it in items:
            frag = modality.fragment(it, with_related=True)
            assert frag is not None, f"item {it.id!r} from the `items` fixture has no fragment"
            ids.extend(frag.slot_items)
        return ids

    def _projector(self, modality, seed: int = 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return modality.build_projector(modality.feature_dim, self.llm_width).eval()

    # -- checks --------------------------------------------------------------------------------------
    def test_registered_through_the_plugin_manager(self, modality, monkeypatch):
        assert self.modality_name, "set modality_name on the contract class"
        assert modality.name == self.modality_name
        if self.plugin is not None:  # hermetic: no entry point loads, only this plugin object
            monkeypatch.setenv(plugins.LOAD_ENV, "")
            plugins.reload_plugins()
            assert plugins.register_plugin(self.plugin, f"contract-{self.modality_name}"), plugins.broken_plugins()
        try:
            reg = plugins.registry()
            cls = reg.modality(self.modality_name)
            assert isinstance(modality, cls)
            assert cls.name == self.modality_name and issubclass(cls, Modality)
            assert not [p for p in reg.problems if repr(self.modality_name) in p], reg.problems
            if self.plugin is not None:
                assert reg.modality_owner[self.modality_name] == f"contract-{self.modality_name}"
        finally:
            if self.plugin is not None:
                monkeypatch.undo()
                plugins.reload_plugins()

    def test_declared_options_are_documented_and_enforced(self, modality):
        declared = type(modality).declared_options
        if declared is None:
            pytest.skip(f"{modality.name!r} declares no options (any --modality-option key is accepted)")
        assert isinstance(declared, dict) and all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                  for k, v in declared.items()), declared
        assert set(modality.options) <= set(declared), f"options in use but not declared: {modality.options}"
        with pytest.raises(EarecError, match="has no option 'no_such_option_xyz'"):
            type(modality).check_options({"no_such_option_xyz": 1})

    def test_encoder_output_shape_and_dtype(self, modality, items):
        self._needs_encoder(modality)
        ids = self._slot_ids(modality, items)
        out = modality.encode(ids)
        assert isinstance(out, torch.Tensor)
        assert out.dtype == torch.float32
        assert tuple(out.shape) == (len(ids), modality.tokens_per_item, modality.feature_dim)
        assert torch.isfinite(out).all()

    def test_encoder_is_deterministic_and_batch_independent(self, modality, items):
        self._needs_encoder(modality)
        ids = self._slot_ids(modality, items)
        a, b = modality.encode(ids), modality.encode(ids)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        rev = modality.encode(list(reversed(ids)))
        torch.testing.assert_close(rev.flip(0), a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(modality.encode(ids[:1]), a[:1], rtol=1e-5, atol=1e-6)

    def test_projector_maps_encoder_width_to_llm_width(self, modality, items):
        if modality.placeholder is None:
            assert modality.build_projector(8, self.llm_width) is None
            return
        feats = modality.encode(self._slot_ids(modality, items))
        out = self._projector(modality)(feats)
        assert tuple(out.shape) == (*feats.shape[:2], self.llm_width)
        assert torch.isfinite(out).all()

    def test_fragment_and_prompt_slots(self, modality, items, contract_tokenizer):
        builder = PromptBuilder(contract_tokenizer, {modality.name: modality}, max_length=4096)
        for it in items:
            for with_related in (True, False):
                frag = modality.fragment(it, with_related=with_related)
                assert frag is not None
                if modality.placeholder is None:
                    assert frag.slot_items == []
                    continue
                assert frag.text.count(modality.placeholder) == len(frag.slot_items) >= 1
            sample = builder.build(it, with_answer=bool(it.anchor.strip()), with_related=True)
            frag = modality.fragment(it, with_related=True)
            text = builder.render(builder.fragments(it, with_related=True))
            if modality.placeholder is None:
                assert sample.slots == []
                continue
            assert text.count(modality.placeholder) == len(frag.slot_items)
            k = modality.tokens_per_item
            assert [s.item_id for s in sample.slots] == frag.slot_items
            for s in sample.slots:
                assert s.k == k and s.modality == modality.name
                assert sample.input_ids[s.start : s.start + k] == [builder.slot_token_id] * k
            n_slot_positions = sum(1 for x in sample.input_ids if x == builder.slot_token_id)
            assert n_slot_positions >= len(frag.slot_items) * k

    def test_splice_writes_projected_features_at_the_slots(self, modality, items, contract_tokenizer):
        self._needs_encoder(modality)

        builder = PromptBuilder(contract_tokenizer, {modality.name: modality}, max_length=4096)
        samples = [builder.build(it, with_answer=False, with_related=True) for it in items]
        batch = collate(samples, contract_tokenizer.pad_token_id)
        base = torch.zeros(*batch.input_ids.shape, self.llm_width)
        projector = self._projector(modality)
        with torch.no_grad():
            out = splice(base, batch, {modality.name: modality}, {modality.name: projector})
            expected = projector(modality.encode(batch.slot_items[modality.name])).reshape(-1, self.llm_width)
        flat = out.reshape(-1, self.llm_width)
        pos = batch.slot_positions[modality.name]
        torch.testing.assert_close(flat[pos], expected)
        mask = torch.ones(flat.shape[0], dtype=torch.bool)
        mask[pos] = False
        assert (flat[mask] == 0).all()

    def test_missing_input_returns_none(self, modality, item_without_input):
        assert modality.fragment(item_without_input, with_related=True) is None
        assert modality.fragment(item_without_input, with_related=False) is None

    def test_projector_save_load_round_trip(self, modality, items, tmp_path):
        self._needs_encoder(modality)
        from safetensors.torch import save_file

        projector = self._projector(modality, seed=1)
        save_file({k: v.detach().float().contiguous() for k, v in projector.state_dict().items()},
                  str(tmp_path / "projector.safetensors"))
        meta = {"modality": modality.name, "hidden_size": self.llm_width, "feature_dim": modality.feature_dim}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(2)  # a different init, so the check sees the loaded weights
            loaded = load_projector(tmp_path / "projector.safetensors", meta, modality, self.llm_width)
        feats = modality.encode(self._slot_ids(modality, items))
        with torch.no_grad():
            torch.testing.assert_close(loaded(feats), projector(feats), rtol=0, atol=0)


def pytest_configure(config):
    config.addinivalue_line("markers", "earec_contract: EARec modality contract checks")
