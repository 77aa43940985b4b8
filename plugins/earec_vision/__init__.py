"""Built-in *vision* modality: an item's image through a frozen local CLIP image encoder, projected
to the LLM width by LLaVA's 2-layer GELU MLP (the :class:`~earec_core.modality.Modality`
default).  Images of related items ("often bought together") add more slots, as in the paper.

Encoder features are computed once, in :meth:`VisionModality.prepare`, for every catalog item
whose image opens, and cached under ``RUN/encoders/vision/features.safetensors``; alignment and
embedding only look rows up.

Options (``--modality-option vision.KEY=VALUE``, saved in ``run.json`` under
``modality_options.vision``):
    encoder: a local Hugging Face CLIP folder (``CLIPVisionModel`` or a full ``CLIPModel``
        checkpoint, plus its ``preprocessor_config.json``), or with ``backend=open_clip`` a local
        open_clip checkpoint file (needs ``open_clip_torch`` and ``open_clip_model=NAME``).
        Required; nothing is ever downloaded.
    features: ``patch`` (default; the paper / LLaVA: hidden states of ``layer`` without the CLS
        token, ``tokens_per_item`` = number of patches = 576 for ViT-L/14-336) or ``pooled`` (one
        token per image).  Cost: every image slot takes ``tokens_per_item`` positions of the
        prompt's ``max_length`` budget, and the cache holds ``items x tokens_per_item x width``
        float32 values (ViT-L/14-336 patch features: 2.4 MB per item).
    layer: hidden-state index for patch features (default -2, the second-to-last layer).
    n_related: related-item images per prompt (default 3; 0 disables them).  When a prompt
        exceeds the token budget, related images are dropped one at a time; the item's own image
        and the answer are kept.
    image_field: the item field holding the image path (default ``image``), relative to the
        dataset folder; absolute paths and paths leaving the folder are refused.
    max_pixels: images with more pixels are skipped unread (default: Pillow's limit, ~89.5 M).
    batch_size: images per encoder forward pass (default 16).
    device: ``auto`` (default; CUDA when available), ``cpu``, ``cuda:0``, …
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from earec_core import hookimpl
from earec_core.data import resolve_media_path
from earec_core.embstore import ItemFeatures
from earec_core.errors import ArtifactError, DataError, EarecError
from earec_core.modality import Fragment, Modality

from .images import DEFAULT_MAX_PIXELS, UNSAFE_PATH, open_image

FEATURES_FILE = "features.safetensors"
log = logging.getLogger("earec.vision")


class VisionModality(Modality):
    name = "vision"
    code = "V"
    declared_options = {
        "encoder": "a local HF CLIP folder or open_clip checkpoint (required)",
        "features": "patch (default) or pooled", "layer": "hidden-state index for patch features (default -2)",
        "n_related": "related-item images per prompt (default 3)", "image_field": "item field with the image path",
        "max_pixels": "larger images are skipped unread", "batch_size": "images per forward pass (default 16)",
        "device": "auto, cpu, cuda:0, ...", "backend": "auto, hf or open_clip",
        "open_clip_model": "the open_clip architecture name (backend open_clip)",
    }
    placeholder = "<image>"
    description = "item image through a local CLIP encoder (patch or pooled features) + related images, MLP projector"

    def __init__(self, **options):
        super().__init__(**options)
        self._table: ItemFeatures | None = None
        self.encoder_info: dict = {}

    # -- data side -------------------------------------------------------------------------------
    def image_path(self, item) -> str | None:
        """The item's image path as the dataset gives it (relative), or ``None``."""
        field = self.options.get("image_field", "image")
        value = item.media.get(field) or item.attributes.get(field)
        return value.strip() if value and value.strip() else None

    def prepare(self, ctx) -> dict:
        """Encode every catalog item's image once and cache the features.

        Returns facts for ``RUN/encoders/vision/facts.json``: items with features, items without
        an image, and skipped images counted by reason (``missing``, ``empty_file``,
        ``unreadable``, ``too_large``, ``unsafe_path``, ``non_finite``).
        """
        try:
            import PIL  # noqa: F401
        except ImportError:
            raise EarecError("the vision modality needs Pillow: pip install 'earec[vision]'") from None
        from .encoders import load_encoder

        encoder = load_encoder(self.options)
        root = getattr(ctx.dataset, "directory", None) or getattr(ctx.dataset, "root", None)
        max_pixels = int(self.options.get("max_pixels", DEFAULT_MAX_PIXELS))
        batch_size = max(1, int(self.options.get("batch_size", 16)))
        skipped: dict[str, int] = {}
        examples: list[str] = []
        no_image = 0
        ids: list[str] = []
        chunks: list[torch.Tensor] = []
        pending: list[tuple[str, object]] = []

        def skip(item_id: str, reason: str, detail: str) -> None:
            skipped[reason] = skipped.get(reason, 0) + 1
            log.debug("vision: item %s has no usable image (%s: %s)", item_id, reason, detail)
            if len(examples) < 5:
                examples.append(f"{item_id}: {reason} ({detail})")

        def flush() -> None:
            if not pending:
                return
            feats = encoder.encode([img for _, img in pending])
            for (iid, _), row in zip(pending, feats):
                if torch.isfinite(row).all():
                    ids.append(iid)
                    chunks.append(row)
                else:
                    skip(iid, "non_finite", "the encoder returned NaN/Inf")
            pending.clear()

        for item in ctx.dataset.catalog:
            rel = self.image_path(item)
            if rel is None:
                no_image += 1
                continue
            try:
                if root is None:
                    raise DataError("the dataset does not say which folder its media paths are relative to")
                path = resolve_media_path(root, rel)
            except DataError as exc:
                skip(item.id, UNSAFE_PATH, str(exc))
                continue
            img, reason, detail = open_image(path, max_pixels=max_pixels)
            if img is None:
                skip(item.id, reason, detail)
                continue
            pending.append((item.id, img))
            if len(pending) >= batch_size:
                flush()
        flush()

        if chunks:
            table = torch.stack(chunks)
        else:  # no usable image at all: keep the shape so the modality still reports its dims
            from PIL import Image

            probe = encoder.encode([Image.new("RGB", (16, 16))])
            table = probe.new_zeros((0, *probe.shape[1:]))
        info = encoder.describe()
        directory = ctx.artifact_dir(self.name)
        ItemFeatures(ids, table, info).save(directory / FEATURES_FILE)
        self.load(directory)
        n_skipped = sum(skipped.values())
        if n_skipped:
            log.warning("vision: %d of %d images skipped %s; e.g. %s", n_skipped, len(ids) + n_skipped,
                        dict(sorted(skipped.items())), "; ".join(examples[:3]))
        log.info("vision: features for %d items, %d without an image field", len(ids), no_image)
        return {"items": len(ctx.dataset.catalog), "with_features": len(ids), "without_image": no_image,
                "skipped": dict(sorted(skipped.items())), "skipped_examples": examples,
                "tokens_per_item": int(table.shape[1]), "feature_dim": int(table.shape[2]), "encoder": info,
                "cache_bytes": int(table.numel() * 4)}

    def load(self, directory: Path) -> None:
        path = Path(directory) / FEATURES_FILE
        if not path.is_file():
            raise ArtifactError(f"vision encoder cache missing: {path}; run `earec align --modality vision` "
                                "with --modality-option vision.encoder=PATH")
        self._table = ItemFeatures.load(path, what="vision feature cache", fix="delete it to recompute", ndim=3)
        self.encoder_info = self._table.info

    def _require(self) -> ItemFeatures:
        if self._table is None:
            raise ArtifactError("vision modality used before prepare()/load()")
        return self._table

    def has_image(self, item_id: str) -> bool:
        return self._table is not None and item_id in self._table

    def limited_fragment(self, item, max_related: int | None):
        """The item's image slot plus at most ``max_related`` related-item images (``None``: the
        ``n_related`` option); ``None`` when the item has no usable image."""
        if not self.has_image(item.id):
            return None
        limit = int(self.options.get("n_related", 3))
        if max_related is not None:
            limit = min(limit, max_related)
        related = [r for r in dict.fromkeys(item.related) if r != item.id and self.has_image(r)][: max(0, limit)]
        text = f"Image: {self.placeholder}."
        if related:
            text += " Often bought together with: " + ", ".join([self.placeholder] * len(related)) + "."
        return Fragment(text, [item.id, *related])

    def fragment(self, item, *, with_related: bool = True):
        return self.limited_fragment(item, None if with_related else 0)

    # -- encoder side ----------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self._require().features.shape[2])

    @property
    def tokens_per_item(self) -> int:
        return int(self._require().features.shape[1])

    def encode(self, item_ids: list[str]) -> torch.Tensor:
        return self._require().rows(item_ids)


@hookimpl
def earec_register_modalities(register):
    register(VisionModality)
