"""The core's plugin-author contract kit, run on the audio modality."""

from __future__ import annotations

import pytest

import earec_audio
from earec_core.modality import ModalityContext
from earec_core.data import Item, load_dataset
from earec_core.testing import ModalityContract


class TestAudioContract(ModalityContract):
    modality_name = "audio"

    @pytest.fixture(scope="class")
    def dataset(self, audio_dataset_dir):
        return load_dataset(audio_dataset_dir, k=3)

    @pytest.fixture(scope="class")
    def modality(self, dataset, tmp_path_factory):
        m = earec_audio.AudioModality(tokens=4, dim=32, n_mels=40)
        m.prepare(ModalityContext(dataset=dataset, encoders_dir=tmp_path_factory.mktemp("run") / "encoders"))
        return m

    @pytest.fixture(scope="class")
    def items(self, dataset, modality):
        return [dataset.catalog[i] for i in ("i2", "i6", "i13", "i14")]

    @pytest.fixture(scope="class")
    def item_without_input(self, dataset):
        return Item(id="silent", anchor="A song with no file")


class TestAudioContractInProcessRegistration(TestAudioContract):
    """Same checks with the plugin module registered in-process (how a plugin that is not yet
    installed is tested)."""

    plugin = earec_audio
