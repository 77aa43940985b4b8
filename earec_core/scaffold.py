"""``earec new-plugin NAME``: a ready-to-edit modality plugin package that passes the contract kit.

The generated encoder is a real but simple one (hashed character trigrams of the item's metadata
through a fixed random projection), so the package works end to end at once; authors replace
``encode``/``feature_dim``/``fragment`` with their own encoder.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from .errors import EarecError
from .plugins import ENTRY_POINT_GROUP, registry

PYPROJECT = '''[build-system]
requires = ["setuptools>=77", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "earec-{name}"
version = "0.1.0"
description = "EARec modality plugin: {name}"
requires-python = ">=3.10"
dependencies = ["earec"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This line is what makes `earec plugins` find the modality.
[project.entry-points.earec]
{name} = "earec_{name}"

[tool.setuptools]
packages = ["earec_{name}"]
'''

MODULE = '''"""EARec modality plugin ``{name}``.

Replace the encoder below with yours; keep the contract (see ``earec_core.testing``):
``encode(ids)`` returns ``(n, tokens_per_item, feature_dim)`` float32 and is deterministic,
``fragment`` returns ``None`` for items without input and contains the placeholder once per slot.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import torch

from earec_core import hookimpl
from earec_core.embstore import ItemFeatures
from earec_core.modality import Fragment, Modality

FEATURES = "features.safetensors"


class {cls}(Modality):
    name = "{name}"
    placeholder = "<{name}>"
    description = "{name} modality (template: hashed character trigrams of the item metadata)"
    # every --modality-option {name}.KEY=VALUE key this modality reads; others are refused
    declared_options = {{"seed": "seed of the fixed random projection (default 0)"}}

    DIM = 64
    BUCKETS = 1024

    def __init__(self, **options):
        super().__init__(**options)
        gen = torch.Generator().manual_seed(int(options.get("seed", 0)))
        self._projection = torch.randn(self.BUCKETS, self.DIM, generator=gen) / self.BUCKETS**0.5
        self._text: dict[str, str] = {{}}
        self._cache: ItemFeatures | None = None

    def prepare(self, ctx) -> dict:
        """Encode every item with input once and cache the features (the core's item-feature table)."""
        self._text = {{it.id: self._input(it) for it in ctx.dataset.catalog if self._input(it)}}
        ids = list(self._text)
        ItemFeatures(ids, self._featurize([self._text[i] for i in ids])).save(ctx.artifact_dir(self.name) / FEATURES)
        self.load(ctx.artifact_dir(self.name))
        return {{"items_with_input": len(ids)}}

    def load(self, directory: Path) -> None:
        self._cache = ItemFeatures.load(Path(directory) / FEATURES, what="{name} feature cache",
                                        fix="delete it to recompute", ndim=3)

    @staticmethod
    def _input(item) -> str:
        return " ".join(item.attributes.values()).strip()

    @property
    def feature_dim(self) -> int:
        return self.DIM

    def fragment(self, item, *, with_related: bool = True):
        text = self._text.get(item.id) or self._input(item)
        if not text:
            return None
        self._text[item.id] = text
        return Fragment(f"{title}: {{self.placeholder}}.", [item.id])

    def _featurize(self, texts: list[str]) -> torch.Tensor:
        rows = torch.zeros(len(texts), self.BUCKETS)
        for r, text in enumerate(texts):
            for i in range(max(0, len(text) - 2)):
                rows[r, zlib.crc32(text[i : i + 3].encode()) % self.BUCKETS] += 1.0
        return (rows @ self._projection).unsqueeze(1)

    def encode(self, item_ids: list[str]) -> torch.Tensor:
        if self._cache is not None and all(i in self._cache for i in item_ids):
            return self._cache.rows(item_ids)
        return self._featurize([self._text.get(i, "") for i in item_ids])


@hookimpl
def earec_register_modalities(register):
    register({cls})
'''

CONFTEST = '''pytest_plugins = ["earec_core.testing"]
'''

TEST = '''import pytest

from earec_core.data import Item
from earec_core.testing import ModalityContract

import earec_{name}


class Test{cls}Contract(ModalityContract):
    modality_name = "{name}"
    plugin = earec_{name}  # registered in-process, so the check works before `pip install`

    @pytest.fixture(scope="class")
    def modality(self):
        return earec_{name}.{cls}()

    @pytest.fixture(scope="class")
    def items(self):
        return [Item(id=str(i), anchor=f"Item {{i}}", attributes={{"genre": g}})
                for i, g in enumerate(["Drama", "Comedy", "Action"])]

    @pytest.fixture(scope="class")
    def item_without_input(self):
        return Item(id="bare", anchor="No metadata")
'''

README = '''# earec-{name}

An EARec modality plugin.

    pip install -e .            # `earec plugins` now lists "{name}"
    pytest tests                # the EARec contract kit (earec_core.testing)
    earec align --modality {name}
    earec compose --add {name}=0.2 --from text+behavior
'''


def new_plugin(name: str, directory: str | Path) -> Path:
    """Write a plugin package for modality ``name`` into ``directory/earec-NAME``; returns it.

    Raises EarecError for a name that is not a lowercase Python identifier, that an installed
    modality or entry point already uses, whose package ``earec_NAME`` is importable, or a folder
    that exists.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise EarecError(f"plugin name {name!r}: use a lowercase identifier like 'audio' or 'sensor_data'")
    taken = _taken(name)
    if taken:
        raise EarecError(f"plugin name {name!r} is taken ({taken}); two plugins with one name shadow each other. "
                         "Choose another name")
    root = Path(directory) / f"earec-{name}"
    if root.exists():
        raise EarecError(f"{root} already exists; choose another name or folder")
    cls = "".join(part.capitalize() for part in name.split("_")) + "Modality"
    values = {"name": name, "cls": cls, "title": name.replace("_", " ").capitalize()}
    files = {
        "pyproject.toml": PYPROJECT,
        f"earec_{name}/__init__.py": MODULE,
        "tests/conftest.py": CONFTEST,
        "tests/test_contract.py": TEST,
        "README.md": README,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return root


def _taken(name: str) -> str | None:
    """Why ``name`` cannot be a new plugin's name, or ``None``."""
    import importlib.metadata
    import importlib.util

    if name in registry().modalities:
        return "a registered modality"
    if any(ep.name == name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)):
        return "an installed entry point of the 'earec' group"
    if importlib.util.find_spec(f"earec_{name}") is not None:
        return f"the package earec_{name} is importable"
    return None
