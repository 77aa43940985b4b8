"""The audio modality on a RecBole dataset with real WAV files: prepare() facts, the feature
cache, missing/broken input, seeds and checkpoints, entry-point registration."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from earec_audio import FEATURES_FILE, AudioEncoder, AudioModality
from earec_core.modality import ModalityContext
from earec_core.data import load_dataset
from earec_core.errors import ArtifactError


@pytest.fixture(scope="module")
def dataset(audio_dataset_dir):
    return load_dataset(audio_dataset_dir, k=3)


def context(dataset, run_dir, seed=0):
    return ModalityContext(dataset=dataset, encoders_dir=run_dir / "encoders", seed=seed, progress=False)


@pytest.fixture(scope="module")
def prepared(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    m = AudioModality()
    facts = m.prepare(context(dataset, run))
    return m, facts, run


def test_importer_puts_the_audio_field_into_media_not_text(dataset):
    it = dataset.catalog["i2"]
    assert it.media == {"audio": "audio/i2.wav"} and "audio" not in it.attributes
    assert "audio" not in dataset.catalog["i0"].media  # empty field: no media entry


def test_prepare_counts_unusable_files_by_reason(prepared, dataset):
    m, facts, run = prepared
    assert facts["skipped"] == {"empty": 1, "corrupt": 1, "not_audio": 1, "missing_file": 1, "unsafe_path": 2}
    assert facts["with_audio"] + facts["without_audio"] + sum(facts["skipped"].values()) == len(dataset.catalog)
    assert (run / "encoders" / "audio" / FEATURES_FILE).is_file()
    for bad in ("i1", "i3", "i5", "i7", "i9", "i11", "i0"):  # broken, unsafe or no audio
        assert m.fragment(dataset.catalog[bad]) is None
    frag = m.fragment(dataset.catalog["i2"])
    assert frag.text.count("<audio>") == 1 and frag.slot_items == ["i2"]


def test_features_load_in_a_fresh_instance(prepared):
    m, _, run = prepared
    fresh = AudioModality()
    fresh.load(run / "encoders" / "audio")
    ids = ["i2", "i6", "i13"]
    torch.testing.assert_close(fresh.encode(ids), m.encode(ids), rtol=0, atol=0)
    assert fresh.encode(ids).shape == (3, 8, 128)
    with pytest.raises(ArtifactError, match="features missing"):
        AudioModality().load(run / "nowhere")


def test_items_with_different_sounds_get_different_features(prepared):
    m, _, _ = prepared
    f = m.encode(["i2", "i6"])
    assert not torch.allclose(f[0], f[1])


def test_seed_and_options_decide_the_encoder(dataset, tmp_path):
    small = {"tokens": 4, "dim": 32, "n_mels": 40}
    a = AudioModality(**small)
    a.prepare(context(dataset, tmp_path / "a", seed=3))
    b = AudioModality(**small)
    b.prepare(context(dataset, tmp_path / "b", seed=3))
    c = AudioModality(**small, seed=4)
    c.prepare(context(dataset, tmp_path / "c", seed=3))
    assert a.encode(["i2"]).shape == (1, 4, 32) and a.feature_dim == 32 and a.tokens_per_item == 4
    torch.testing.assert_close(a.encode(["i2"]), b.encode(["i2"]), rtol=0, atol=0)
    assert not torch.allclose(a.encode(["i2"]), c.encode(["i2"]))


def test_checkpoint_option_loads_a_local_safetensors_encoder(dataset, tmp_path):
    AudioEncoder.from_seed(7, n_mels=40, dim=32, tokens=4).save(tmp_path / "enc.safetensors")
    from_ckpt = AudioModality(checkpoint=str(tmp_path / "enc.safetensors"))
    facts = from_ckpt.prepare(context(dataset, tmp_path / "ck"))
    assert facts["encoder"]["dim"] == 32 and from_ckpt.feature_dim == 32  # config from the checkpoint
    seeded = AudioModality(seed=7, n_mels=40, dim=32, tokens=4)
    seeded.prepare(context(dataset, tmp_path / "sd"))
    torch.testing.assert_close(from_ckpt.encode(["i2", "i6"]), seeded.encode(["i2", "i6"]))
    with pytest.raises(ArtifactError, match="does not fit"):
        AudioModality(checkpoint=str(tmp_path / "enc.safetensors"), dim=64).prepare(context(dataset, tmp_path / "x"))
    with pytest.raises(ArtifactError, match="checkpoint"):
        AudioModality(checkpoint=str(tmp_path / "missing.safetensors")).prepare(context(dataset, tmp_path / "y"))


def test_installed_distribution_is_listed_by_earec_plugins():
    from earec_core import plugins
    from earec_core.cli import cli

    plugins.reload_plugins()
    out = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    audio = next(p for p in out["plugins"] if p["name"] == "audio")
    assert audio["modalities"] == ["audio"] and audio["version"] == "0.1.0"
    assert audio["hooks"] == ["earec_register_modalities"]
