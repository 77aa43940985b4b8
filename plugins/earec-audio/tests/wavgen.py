"""Real WAV files for the audio tests: tones/chirps at several sample rates, channel counts and
bit depths written with numpy + ``wave``, plus broken files, tied to a small RecBole dataset.
(A uniquely named module, so test files can import it whatever other ``conftest`` is loaded.)"""

from __future__ import annotations

import random
import wave
from pathlib import Path

import numpy as np


def write_wav(path: Path, signal: np.ndarray, rate: int, width: int = 2) -> Path:
    """``signal`` ``(frames,)`` or ``(frames, channels)`` in [-1, 1] as integer PCM of ``width`` bytes."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    x = np.clip(x, -1, 1)
    if width == 1:
        raw = np.round(x * 127 + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.round(x * 32767).astype("<i2").tobytes()
    elif width == 3:
        v = np.round(x * (2**23 - 1)).astype(np.int64).reshape(-1) & 0xFFFFFF
        raw = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    else:
        raw = np.round(x * (2**31 - 1)).astype("<i4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(x.shape[1])
        fh.setsampwidth(width)
        fh.setframerate(rate)
        fh.writeframes(raw)
    return path


def tone(freq: float, rate: int, seconds: float = 0.4, channels: int = 1, chirp_to: float | None = None) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    if chirp_to is None:
        x = np.sin(2 * np.pi * freq * t)
    else:  # linear chirp freq -> chirp_to
        x = np.sin(2 * np.pi * (freq * t + (chirp_to - freq) * t**2 / (2 * seconds)))
    x = 0.5 * x
    return np.stack([x * (1 - 0.3 * c) for c in range(channels)], axis=1) if channels > 1 else x


# (rate, channels, width) cycled over the items that get a good file
FORMATS = [(16000, 1, 2), (44100, 2, 2), (8000, 1, 1), (22050, 2, 4), (48000, 1, 3), (11025, 1, 2)]
BROKEN = {  # item -> (audio field value, what to write there)
    "i1": ("audio/empty.wav", b""),
    "i3": ("audio/corrupt.wav", b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage"),
    "i5": ("audio/notes.wav", b"this is a text file, not audio\n" * 4),
    "i7": ("audio/missing.wav", None),
    "i9": ("/etc/passwd", None),
    "i11": ("../outside.wav", None),
}


def write_audio_dataset(root: Path, name: str = "toy", n_users: int = 50, n_items: int = 36, seed: int = 0,
                        no_audio_every: int = 4) -> Path:
    """RecBole atomic files with an ``audio`` item field; every ``no_audio_every``-th item has no
    audio, the BROKEN items point at unusable files, the rest at real WAVs."""
    rng = random.Random(seed)
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(n_users):
        start = rng.randrange(n_items)
        for t in range(rng.randint(6, 10)):
            lines.append(f"u{u}\ti{(start + t) % n_items}\t4\t{1000 + 10 * t + u}")
    (d / f"{name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "outside.wav").parent.mkdir(parents=True, exist_ok=True)
    write_wav(root / "outside.wav", tone(440, 16000), 16000)  # exists, but outside the dataset folder
    rows = ["item_id:token\ttitle:token_seq\tgenre:token\taudio:token"]
    k = 0
    for i in range(n_items):
        iid = f"i{i}"
        if iid in BROKEN:
            rel, content = BROKEN[iid]
            if content is not None:
                (d / rel).parent.mkdir(parents=True, exist_ok=True)
                (d / rel).write_bytes(content)
        elif i % no_audio_every == 0:
            rel = ""
        else:
            rate, ch, width = FORMATS[k % len(FORMATS)]
            k += 1
            sig = tone(200 + 97 * i, rate, channels=ch, chirp_to=(2000 + 50 * i) if i % 2 else None)
            rel = f"audio/{iid}.wav"
            write_wav(d / rel, sig, rate, width)
        rows.append(f"{iid}\tSong number {i}\t{['Rock', 'Jazz', 'Folk'][i % 3]}\t{rel}")
    (d / f"{name}.item").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return d
