"""The plugin-author contract kit (earec_core.testing) run on the built-in modalities."""

from __future__ import annotations

import pytest

from earec_core.data import Item, load_dataset
from earec_core.testing import ModalityContract


@pytest.fixture(scope="module")
def toy(tmp_path_factory, make_dataset):
    root = tmp_path_factory.mktemp("contract")
    return root, load_dataset(make_dataset(root), k=3)


class TestTextContract(ModalityContract):
    modality_name = "text"

    @pytest.fixture(scope="class")
    def modality(self):
        from earec_core.plugins import registry

        return registry().modality("text")()

    @pytest.fixture(scope="class")
    def items(self, toy):
        return toy[1].catalog.items[:4]

    @pytest.fixture(scope="class")
    def item_without_input(self):
        return Item(id="bare", anchor="A title", attributes={})


class TestBehaviorContract(ModalityContract):
    modality_name = "behavior"

    @pytest.fixture(scope="class")
    def modality(self, toy):
        from earec_core.workspace import Workspace

        root, _ = toy
        ws = Workspace(root / "run", progress=False, dataset=str(root / "toy"), k_core=3,
                       recommender_options={"max_epochs": 2, "hidden_size": 16, "inner_size": 32})
        return ws.modality("behavior")  # the real prepare(): an ID SASRec trained on the training split

    @pytest.fixture(scope="class")
    def items(self, toy):
        with_related = [it for it in toy[1].catalog if it.related]
        return with_related[:3] + [it for it in toy[1].catalog if not it.related][:1]

    @pytest.fixture(scope="class")
    def item_without_input(self):
        return Item(id="not-in-the-catalog", anchor="A title")
