"""The plugin-author contract kit (earec_core.testing) run on the vision modality, prepared the
way a user's run prepares it: a Workspace with ``modality_options`` naming a local CLIP folder."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL")
testing = pytest.importorskip("earec_core.testing")

from earec_core.data import Item  # noqa: E402
from test_vision import FIXTURE, save_tiny_clip  # noqa: E402


class TestVisionContract(testing.ModalityContract):
    modality_name = "vision"

    @pytest.fixture(scope="class")
    def workspace(self, tmp_path_factory):
        from earec_core.workspace import Workspace

        root = tmp_path_factory.mktemp("vision-contract")
        clip = save_tiny_clip(root / "clip", image_size=32, patch_size=8, hidden=32, layers=2, heads=4)
        return Workspace(root / "run", progress=False, dataset=str(FIXTURE),
                         modality_options={"vision": {"encoder": str(clip), "features": "patch", "n_related": 2}})

    @pytest.fixture(scope="class")
    def modality(self, workspace):
        return workspace.modality("vision")

    @pytest.fixture(scope="class")
    def items(self, workspace, modality):
        catalog = workspace.dataset.catalog
        with_related = [it for it in catalog if modality.has_image(it.id) and any(map(modality.has_image, it.related))]
        return with_related[:3] + [catalog["p38"]]  # + the RGBA PNG

    @pytest.fixture(scope="class")
    def item_without_input(self, workspace):
        return workspace.dataset.catalog["p47"]  # the gift card: no image field

    def test_an_item_outside_the_catalog_has_no_input(self, modality):
        assert modality.fragment(Item("elsewhere", "A title", media={"image": "images/p01.jpg"})) is None
