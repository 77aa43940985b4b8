"""Image encoders: a local Hugging Face CLIP vision tower (the tested default) or, when the
``open_clip`` package happens to be installed, an open_clip checkpoint.  Nothing is downloaded:
both load from local paths only.

``features="patch"`` (the paper / LLaVA): the hidden states of layer ``layer`` (default -2, the
second-to-last), CLS token dropped → one token per patch, ``(n, n_patches, width)``; CLIP
ViT-L/14-336 gives 576 tokens of width 1024 per image.
``features="pooled"``: one token per image, ``(n, 1, d)``: HF's ``pooler_output`` (the
post-layer-norm CLS state of the last layer, width ``hidden_size``) / open_clip's
``encode_image`` (the projected image embedding).
"""

from __future__ import annotations

from pathlib import Path

import torch

from earec_core.errors import EarecError

FEATURES = ("patch", "pooled")


class ImageEncoder:
    """Common interface: ``encode(list of RGB PIL images) -> (n, k, d) float32`` in eval mode."""

    features: str
    layer: int

    def encode(self, images) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


def _device(option: str) -> torch.device:
    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(option)


def _check_layer(layer: int, n_hidden_states: int) -> int:
    if not -n_hidden_states <= layer < n_hidden_states:
        raise EarecError(f"vision option layer={layer} is out of range: the encoder has {n_hidden_states} "
                         f"hidden states (embeddings + {n_hidden_states - 1} layers)")
    return layer


class HFCLIPEncoder(ImageEncoder):
    """``CLIPVisionModel`` + ``CLIPImageProcessor`` from one local folder (a vision-only or a full
    CLIP checkpoint, e.g. ``openai/clip-vit-large-patch14-336`` downloaded beforehand)."""

    def __init__(self, path: Path, *, features: str, layer: int, device: str = "auto"):
        from transformers import CLIPVisionModel

        try:  # the PIL implementation: same numbers with or without torchvision installed
            from transformers import CLIPImageProcessorPil as Processor
        except ImportError:  # older transformers: CLIPImageProcessor *is* the PIL implementation
            from transformers import CLIPImageProcessor as Processor

        self.path, self.features, self.layer = Path(path), features, layer
        try:
            self.model = CLIPVisionModel.from_pretrained(str(path), local_files_only=True)
            self.processor = Processor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EarecError(f"cannot load a CLIP vision model + image processor from {path}: {exc}") from None
        self.device = _device(device)
        self.model.to(self.device).eval()
        cfg = self.model.config
        _check_layer(layer, cfg.num_hidden_layers + 1)
        self.width = int(cfg.hidden_size)
        self.n_patches = (int(cfg.image_size) // int(cfg.patch_size)) ** 2

    @property
    def tokens_per_item(self) -> int:
        return self.n_patches if self.features == "patch" else 1

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, dtype=next(self.model.parameters()).dtype)
        out = self.model(pixel_values=pixels, output_hidden_states=self.features == "patch")
        if self.features == "patch":
            feats = out.hidden_states[self.layer][:, 1:]  # drop CLS, as LLaVA's select_feature="patch"
        else:
            feats = out.pooler_output[:, None, :]
        return feats.float().cpu().contiguous()

    def describe(self) -> dict:
        return {"backend": "hf", "path": str(self.path), "features": self.features, "layer": self.layer,
                "tokens_per_item": self.tokens_per_item, "model_type": self.model.config.model_type}


class OpenCLIPEncoder(ImageEncoder):
    """An open_clip model ``model_name`` with weights from a local checkpoint file (never a hub tag)."""

    def __init__(self, path: Path, *, model_name: str, features: str, layer: int, device: str = "auto"):
        try:
            import open_clip
        except ImportError:
            raise EarecError("vision backend 'open_clip' needs the open_clip_torch package; use a HF CLIP folder "
                             "(backend 'hf') instead") from None
        path = Path(path)
        if not path.is_file():
            raise EarecError(f"open_clip checkpoint not found: {path} (only local checkpoint files are accepted)")
        self.path, self.model_name, self.features, self.layer = path, model_name, features, layer
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path))
        self.device = _device(device)
        self.model, self.preprocess = model.to(self.device).eval(), preprocess
        visual = self.model.visual
        if features == "patch":
            blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
            if blocks is None:
                raise EarecError(f"open_clip model {model_name!r} is not a ViT; use features=pooled")
            _check_layer(layer, len(blocks) + 1)
            index = layer if layer < 0 else layer - 1  # hidden state j is the output of block j - 1
            if layer == 0 or index < -len(blocks):
                raise EarecError("vision option layer: the patch embeddings (layer 0) are not supported for open_clip")
            self._block = blocks[index]
            self._batch_first = getattr(visual.transformer, "batch_first", True)
            self._n_prefix = 0 if getattr(visual, "class_embedding", None) is None else 1

    @property
    def tokens_per_item(self) -> int:
        if self.features == "pooled":
            return 1
        grid = self.model.visual.grid_size
        return int(grid[0]) * int(grid[1])

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        if self.features == "pooled":
            return self.model.encode_image(x).float()[:, None, :].cpu().contiguous()
        captured = {}
        handle = self._block.register_forward_hook(lambda _m, _i, out: captured.__setitem__("h", out))
        try:
            self.model.visual(x)
        finally:
            handle.remove()
        h = captured["h"][0] if isinstance(captured["h"], tuple) else captured["h"]
        if not self._batch_first:
            h = h.permute(1, 0, 2)
        return h[:, self._n_prefix:].float().cpu().contiguous()

    def describe(self) -> dict:
        return {"backend": "open_clip", "path": str(self.path), "model_name": self.model_name,
                "features": self.features, "layer": self.layer, "tokens_per_item": self.tokens_per_item}


def load_encoder(options: dict) -> ImageEncoder:
    """The encoder the modality options ask for.

    Raises:
        EarecError: no ``encoder`` path, a path that does not exist, an unknown ``features`` or
            ``backend``, or a checkpoint that does not load.
    """
    path = options.get("encoder")
    if not path:
        raise EarecError("the vision modality needs a local image encoder: "
                         "--modality-option vision.encoder=/path/to/clip-vit-large-patch14-336")
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise EarecError(f"vision encoder not found: {path} (give a local folder; nothing is downloaded)")
    features = options.get("features", "patch")
    if features not in FEATURES:
        raise EarecError(f"vision option features={features!r}: expected one of {FEATURES}")
    layer = int(options.get("layer", -2))
    device = str(options.get("device", "auto"))
    backend = options.get("backend", "auto")
    if backend == "auto":
        backend = "hf" if path.is_dir() else "open_clip"
    if backend == "hf":
        if not (path / "config.json").is_file():
            raise EarecError(f"{path} is not a Hugging Face model folder (no config.json)")
        return HFCLIPEncoder(path, features=features, layer=layer, device=device)
    if backend == "open_clip":
        name = options.get("open_clip_model")
        if not name:
            raise EarecError("vision backend 'open_clip' needs open_clip_model=NAME (e.g. ViT-L-14-336)")
        return OpenCLIPEncoder(path, model_name=name, features=features, layer=layer, device=device)
    raise EarecError(f"vision option backend={backend!r}: expected 'auto', 'hf' or 'open_clip'")
