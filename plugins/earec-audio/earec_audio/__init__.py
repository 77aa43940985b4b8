"""EARec *audio* modality (a separate distribution, registered through the ``earec`` entry-point
group): each item's WAV file (``Item.media["audio"]``, relative to the dataset folder) becomes a
log-mel spectrogram, a small frozen conv + transformer encoder turns it into ``k`` tokens
``(k, d_enc)``, and the core's 2-layer GELU projector maps them into the LLM's slot positions.

Features are computed once in :meth:`AudioModality.prepare` and cached as safetensors under
``RUN/encoders/audio/``.  Items without a usable file (no path, unsafe path, missing, empty,
corrupt or non-audio file) have no audio fragment; prepare() counts them by reason.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch

from earec_core import hookimpl
from earec_core.embstore import ItemFeatures
from earec_core.errors import ArtifactError
from earec_core.modality import Fragment, Modality

from .dsp import AudioReadError, load_log_mel
from .encoder import AudioEncoder

__version__ = "0.1.0"
__all__ = ["AudioModality", "AudioEncoder", "resolve_audio_path"]

log = logging.getLogger(__name__)
FEATURES_FILE = "audio_features.safetensors"
DEFAULTS = {"tokens": 8, "dim": 128, "n_mels": 64, "max_seconds": 10.0}


class UnsafePath(Exception):
    """A media path that is absolute or escapes the dataset folder."""


def resolve_audio_path(root: Path | None, rel: str) -> Path:
    """``root / rel`` for a relative path that stays inside ``root``.

    Uses ``earec_core.data.resolve_media_path`` when the core provides it.  Raises UnsafePath for
    absolute paths, drive letters, ``..`` components, or symlinks leading out of ``root``.
    """
    if root is None:
        raise UnsafePath(f"{rel!r}: the dataset has no folder to resolve media paths against")
    try:
        from earec_core.data import resolve_media_path
    except ImportError:
        resolve_media_path = None
    if resolve_media_path is not None:
        from earec_core.errors import EarecError

        try:
            return Path(resolve_media_path(root, rel))
        except (ValueError, EarecError) as exc:
            raise UnsafePath(str(exc)) from None
    posix, win = PurePosixPath(rel), PureWindowsPath(rel)
    if not rel or posix.is_absolute() or win.is_absolute() or win.drive or ".." in posix.parts or ".." in win.parts:
        raise UnsafePath(f"{rel!r}: media paths must be relative to the dataset folder, without '..'")
    root = Path(root).resolve()
    full = (root / posix).resolve()
    if not full.is_relative_to(root):
        raise UnsafePath(f"{rel!r}: resolves outside the dataset folder (symlink?)")
    return full


class AudioModality(Modality):
    """Options:
        tokens: ``k``, tokens per item (default 8: the clip's time axis pooled into 8 chunks).
        dim: ``d_enc`` (default 128).
        n_mels: mel bands (default 64).
        max_seconds: only the first seconds of each file are used (default 10).
        seed: encoder init seed (default: the run's seed).
        checkpoint: path of a safetensors encoder checkpoint (``AudioEncoder.save`` format) to
            use instead of the seeded random init.
    """

    name = "audio"
    code = "A"
    declared_options = {"tokens": "tokens per clip (default 8)", "dim": "encoder width (default 128)",
                        "n_mels": "mel bands (default 64)", "max_seconds": "clip length read (default 10)",
                        "checkpoint": "a local encoder checkpoint", "seed": "seed of the random encoder"}
    placeholder = "<audio>"
    description = "WAV -> log-mel -> conv+transformer encoder (k tokens), 2-layer MLP projector"

    def __init__(self, **options):
        super().__init__(**options)
        self._table: ItemFeatures | None = None

    def _opt(self, key):
        return self.options.get(key, DEFAULTS[key])

    # -- encoder ----------------------------------------------------------------------------------
    def build_encoder(self, seed: int = 0) -> AudioEncoder:
        config = {"n_mels": int(self._opt("n_mels")), "dim": int(self._opt("dim")), "tokens": int(self._opt("tokens"))}
        checkpoint = self.options.get("checkpoint")
        if checkpoint:
            explicit = {k: v for k, v in config.items() if k in self.options}
            try:
                return AudioEncoder.from_checkpoint(Path(checkpoint).expanduser(), **explicit)
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"audio encoder checkpoint {checkpoint}: {exc}") from None
        return AudioEncoder.from_seed(int(self.options.get("seed", seed)), **config)

    def prepare(self, ctx) -> dict:
        encoder = self.build_encoder(ctx.seed)
        root = getattr(ctx.dataset, "directory", None)
        ids, feats = [], []
        skipped: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        without = 0
        for item in ctx.dataset.catalog:
            rel = item.media.get(self.name, "")
            if not rel:
                without += 1
                continue
            try:
                path = resolve_audio_path(root, rel)
                mel = load_log_mel(path, max_seconds=float(self._opt("max_seconds")), n_mels=encoder.config["n_mels"])
            except (UnsafePath, AudioReadError) as exc:
                reason = getattr(exc, "reason", "unsafe_path")
                skipped[reason] = skipped.get(reason, 0) + 1
                if len(examples.setdefault(reason, [])) < 3:
                    examples[reason].append(f"{item.id}: {exc}")
                continue
            with torch.inference_mode():
                feats.append(encoder(mel[None])[0].float())
            ids.append(item.id)
        if skipped:
            log.warning("audio: %d items skipped (%s)", sum(skipped.values()), skipped)
        cfg = encoder.config
        table = torch.stack(feats) if feats else torch.zeros(0, cfg["tokens"], cfg["dim"])
        directory = ctx.artifact_dir(self.name)
        ItemFeatures(ids, table, cfg).save(directory / FEATURES_FILE)
        self.load(directory)
        return {"items": len(ctx.dataset.catalog), "with_audio": len(ids), "without_audio": without,
                "skipped": skipped, "skipped_examples": examples, "encoder": cfg,
                "checkpoint": self.options.get("checkpoint")}

    def load(self, directory: Path) -> None:
        self._table = ItemFeatures.load(Path(directory) / FEATURES_FILE, what="audio features",
                                        fix=f"delete {directory} and re-run", ndim=3)

    # -- modality contract --------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return int(self._table.features.shape[2]) if self._table is not None else int(self._opt("dim"))

    @property
    def tokens_per_item(self) -> int:
        return int(self._table.features.shape[1]) if self._table is not None else int(self._opt("tokens"))

    def has_audio(self, item_id: str) -> bool:
        return self._table is not None and item_id in self._table

    def fragment(self, item, *, with_related: bool = True):
        if not self.has_audio(item.id):
            return None
        return Fragment(f"Audio: {self.placeholder}.", [item.id])

    def encode(self, item_ids: list[str]) -> torch.Tensor:
        if self._table is None:
            raise ArtifactError("audio modality used before prepare()/load()")
        return self._table.rows(item_ids)


@hookimpl
def earec_register_modalities(register):
    register(AudioModality)
