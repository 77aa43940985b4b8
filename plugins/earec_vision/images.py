"""Opening item images defensively: every way an image file can be bad becomes a *reason* string
(the item then simply has no vision input), never an exception.

Handled: missing file, zero-byte file, truncated or corrupt bytes, decompression bombs (pixel
limit checked from the header, before any decoding), CMYK / 16-bit / 32-bit / float modes,
palette and alpha images (composited onto white, as product photos with a transparent background
are meant to be seen), animated images (first frame), EXIF orientation.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default Image.MAX_IMAGE_PIXELS (~ 9459 x 9459)

# reasons, in the order they are checked (also the keys of prepare()'s "skipped" counts)
UNSAFE_PATH = "unsafe_path"
MISSING = "missing"
EMPTY = "empty_file"
TOO_LARGE = "too_large"
UNREADABLE = "unreadable"


def _to_8bit(img):
    """16-bit, 32-bit integer and float greyscale → 8-bit ``L`` (Pillow's own ``convert`` clips
    them at 255, which turns most 16-bit photos white)."""
    from PIL import Image

    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        arr = arr.astype(np.float64) / 257.0
    else:  # "I" / "F": stretch the actual range
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        arr = np.nan_to_num((arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def to_rgb(img):
    """Any decoded Pillow image → ``RGB``."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def open_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS):
    """``(image, None, "")`` with a fully decoded RGB image, or ``(None, reason, detail)`` where
    ``reason`` is one of the constants above and ``detail`` says more (for the log)."""
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_file():
        return None, MISSING, "no such file"
    try:
        if path.stat().st_size == 0:
            return None, EMPTY, "zero bytes"
    except OSError:
        return None, MISSING, "no such file"
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) and later raises on huge images; our own
            # limit below is checked from the header, before the pixels are decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width <= 0 or height <= 0:
                    return None, UNREADABLE, "zero-sized image"
                if width * height > max_pixels:
                    return None, TOO_LARGE, f"{width}x{height} pixels > max_pixels={max_pixels}"
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)  # animated GIF/WebP/APNG, multi-page TIFF: the first frame
                img.load()  # decode now: truncated/corrupt data fails here, not later
                img = ImageOps.exif_transpose(img) or img
                rgb = to_rgb(img)
                rgb.load()
                return rgb.copy(), None, ""
    except (Image.DecompressionBombError, MemoryError) as exc:
        return None, TOO_LARGE, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError, struct.error, …
        return None, UNREADABLE, f"{type(exc).__name__}: {exc}"
