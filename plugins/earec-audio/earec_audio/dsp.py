"""Audio front end: WAV reading (standard library ``wave``; ``soundfile`` when installed),
downmix, band-limited resampling, and log-mel spectrograms with ``torch.stft``.

No torchaudio: the mel filterbank and the windowed-sinc resampler are written here.
"""

from __future__ import annotations

import functools
import math
import wave
from pathlib import Path

import numpy as np
import torch

TARGET_RATE = 16_000


class AudioReadError(Exception):
    """A file that cannot be used as audio; ``reason`` is a short key counted in prepare() facts."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _pcm_to_float(raw: bytes, width: int, channels: int) -> np.ndarray:
    """Interleaved little-endian PCM bytes -> ``(frames, channels)`` float32 in [-1, 1]."""
    frame = width * channels
    raw = raw[: len(raw) - len(raw) % frame]  # a truncated last frame is dropped
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        raise AudioReadError("unsupported_format", f"{8 * width}-bit PCM is not supported")
    return x.reshape(-1, channels)


def read_audio(path: str | Path, *, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """``(samples (frames, channels) float32, sample_rate)`` of a WAV file.

    8/16/24/32-bit integer PCM through ``wave``; other encodings (float WAV, FLAC, …) through
    ``soundfile`` if it is installed.  Only the first ``max_seconds`` are read.

    Raises:
        AudioReadError: with reason ``missing_file``, ``empty``, ``not_audio``, ``corrupt`` or
            ``unsupported_format``.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioReadError("missing_file", f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioReadError("empty", f"{path}: empty file")
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        sf = _soundfile()  # FLAC, OGG, AIFF … when soundfile is installed
        if sf is not None:
            try:
                return _read_soundfile(sf, path, max_seconds)
            except AudioReadError:
                pass
        raise AudioReadError("not_audio", f"{path}: not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(str(path), "rb") as fh:
            channels, width, rate, n = fh.getnchannels(), fh.getsampwidth(), fh.getframerate(), fh.getnframes()
            if channels < 1 or rate < 1:
                raise AudioReadError("corrupt", f"{path}: {channels} channels at {rate} Hz")
            if max_seconds is not None:
                n = min(n, int(math.ceil(max_seconds * rate)))
            raw = fh.readframes(n)
    except AudioReadError:
        raise
    except wave.Error as exc:
        msg = str(exc)
        if "unknown format" not in msg:  # a broken header, not merely a non-PCM encoding
            raise AudioReadError("corrupt", f"{path}: {msg}") from None
        sf = _soundfile()
        if sf is None:
            raise AudioReadError("unsupported_format", f"{path}: {msg} (install soundfile for non-PCM WAV)") from None
        return _read_soundfile(sf, path, max_seconds)
    except (EOFError, OSError, ValueError, OverflowError) as exc:  # truncated header, bad sizes
        raise AudioReadError("corrupt", f"{path}: {type(exc).__name__}: {exc}") from None
    samples = _pcm_to_float(raw, width, channels)
    if samples.shape[0] == 0:
        raise AudioReadError("empty", f"{path}: no audio frames")
    return samples, rate


def _soundfile():
    try:
        import soundfile
    except ImportError:  # optional
        return None
    return soundfile


def _read_soundfile(sf, path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    try:
        info = sf.info(str(path))
        frames = -1 if max_seconds is None else int(math.ceil(max_seconds * info.samplerate))
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own error types
        raise AudioReadError("corrupt", f"{path}: {exc}") from None
    if data.shape[0] == 0:
        raise AudioReadError("empty", f"{path}: no audio frames")
    if not np.isfinite(data).all():
        raise AudioReadError("corrupt", f"{path}: NaN/Inf samples")
    return data, rate


def to_mono(samples: np.ndarray) -> torch.Tensor:
    """``(frames, channels)`` -> ``(frames,)`` by averaging the channels."""
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).mean(dim=1)


def resample(x: torch.Tensor, orig: int, new: int = TARGET_RATE, *, width: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling of a 1-D signal (polyphase windowed sinc, Hann² window).

    The low-pass cut-off is ``rolloff * min(orig, new) / 2``, so content above the new Nyquist
    frequency is removed instead of aliased.  When the reduced ratio is huge (coprime rates),
    falls back to anti-aliased linear interpolation.
    """
    if orig == new:
        return x
    g = math.gcd(orig, new)
    up, down = new // g, orig // g
    out_len = int(math.ceil(x.shape[-1] * up / down))
    if max(up, down) > 2000:
        y = torch.nn.functional.interpolate(x.view(1, 1, 1, -1), size=(1, out_len), mode="bilinear",
                                            antialias=True, align_corners=False)
        return y.view(-1)
    kernel, half = _sinc_kernel(up, down, width, rolloff)
    padded = torch.nn.functional.pad(x.view(1, 1, -1), (half, half + down))
    y = torch.nn.functional.conv1d(padded, kernel, stride=down)  # (1, up, frames)
    return y[0].t().reshape(-1)[:out_len]


@functools.lru_cache(maxsize=16)
def _sinc_kernel(up: int, down: int, width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Polyphase filter bank ``(up, 1, 2 * half + down)`` (torchaudio's sinc_interp_hann design)."""
    base = min(up, down) * rolloff
    half = int(math.ceil(width * down / base))
    idx = torch.arange(-half, half + down, dtype=torch.float64)[None, :] / down
    t = (torch.arange(0, -up, -1, dtype=torch.float64)[:, None] / up + idx) * base
    t = t.clamp(-width, width)
    window = torch.cos(t * math.pi / width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / down)
    return kernel.to(torch.float32)[:, None, :], half


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """Triangular HTK-mel filters ``(n_fft // 2 + 1, n_mels)`` (unnormalised, as torchaudio's
    ``melscale_fbanks``), mapping a power spectrum to mel bands."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower[None]) / (centre - lower)[None]
    down = (upper[None] - freqs[:, None]) / (upper - centre)[None]
    return torch.from_numpy(np.maximum(0.0, np.minimum(up, down))).to(torch.float32)


def log_mel(x: torch.Tensor, *, sample_rate: int = TARGET_RATE, n_fft: int = 400, hop: int = 160, n_mels: int = 64,
            fbank: torch.Tensor | None = None) -> torch.Tensor:
    """Log-mel spectrogram ``(n_mels, frames)`` of a 1-D signal (25 ms Hann window, 10 ms hop at
    16 kHz); ``log(mel power + 1e-6)``.  Signals shorter than one window are zero-padded."""
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True,
                      pad_mode="constant", return_complex=True)
    power = spec.abs() ** 2  # (n_fft // 2 + 1, frames)
    fb = mel_filterbank(n_mels, n_fft, sample_rate) if fbank is None else fbank
    return torch.log(fb.t() @ power + 1e-6)


def load_log_mel(path: str | Path, *, max_seconds: float = 10.0, n_mels: int = 64) -> torch.Tensor:
    """Read, downmix, resample to 16 kHz and return the log-mel spectrogram ``(n_mels, frames)``."""
    samples, rate = read_audio(path, max_seconds=max_seconds)
    x = resample(to_mono(samples), rate, TARGET_RATE)
    return log_mel(x, n_mels=n_mels)
