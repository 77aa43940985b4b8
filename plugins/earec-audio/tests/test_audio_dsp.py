"""The audio front end on real WAV files: PCM decoding, downmix, resampling, mel filterbank."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from wavgen import tone, write_wav

from earec_audio.dsp import AudioReadError, load_log_mel, log_mel, mel_filterbank, read_audio, resample, to_mono


def dominant_hz(x: torch.Tensor, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.numpy() * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


@pytest.mark.parametrize("width, tol", [(1, 1e-2), (2, 1e-4), (3, 1e-6), (4, 1e-8)])
def test_pcm_bit_depths_decode_to_the_written_signal(tmp_path, width, tol):
    sig = tone(440, 8000, seconds=0.1)
    samples, rate = read_audio(write_wav(tmp_path / "a.wav", sig, 8000, width))
    assert rate == 8000 and samples.shape == (len(sig), 1) and samples.dtype == np.float32
    np.testing.assert_allclose(samples[:, 0], sig, atol=tol)


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    sig = tone(440, 16000, seconds=0.1, channels=2)
    samples, _ = read_audio(write_wav(tmp_path / "s.wav", sig, 16000))
    assert samples.shape[1] == 2
    np.testing.assert_allclose(to_mono(samples).numpy(), sig.mean(axis=1), atol=1e-4)


@pytest.mark.parametrize("rate, freq", [(8000, 1000), (22050, 3000), (44100, 1000), (48000, 5000), (11025, 2000)])
def test_resampling_to_16k_keeps_the_tone(rate, freq):
    x = torch.tensor(tone(freq, rate, seconds=0.5), dtype=torch.float32)
    y = resample(x, rate, 16000)
    assert abs(len(y) - 8000) <= 1
    assert abs(dominant_hz(y, 16000) - freq) < 5
    assert 0.4 < float(y[800:-800].abs().max()) < 0.6  # amplitude 0.5 survives


def test_downsampling_removes_content_above_the_new_nyquist():
    x = torch.tensor(tone(12000, 44100, seconds=0.5), dtype=torch.float32)  # would alias to 4 kHz
    y = resample(x, 44100, 16000)
    assert float(y[800:-800].pow(2).mean().sqrt()) < 0.01


def test_mel_filterbank_shape_and_peaks():
    fb = mel_filterbank(40, 400, 16000)
    assert fb.shape == (201, 40) and (fb >= 0).all() and (fb.max(dim=0).values > 0).all()
    peaks = fb.argmax(dim=0)
    assert (peaks[1:] >= peaks[:-1]).all()  # filters move up in frequency


def test_log_mel_of_a_tone_peaks_in_the_right_band(tmp_path):
    path = write_wav(tmp_path / "t.wav", tone(1000, 44100, seconds=0.3, channels=2), 44100)
    mel = load_log_mel(path, n_mels=64)
    assert mel.shape[0] == 64 and mel.shape[1] == 31  # 0.3 s at a 10 ms hop, centred frames
    band = int(mel.mean(dim=1).argmax())
    fb = mel_filterbank(64, 400, 16000)
    assert abs(float(fb[:, band].argmax()) * 40 - 1000) < 150  # 40 Hz per FFT bin
    assert torch.isfinite(log_mel(torch.zeros(10))).all()  # silence / shorter than a window


def float_wav(path, rate=16000):
    data = np.zeros(100, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
                     + b"data" + struct.pack("<I", len(data)) + data)
    return path


def test_unusable_files_raise_with_a_reason(tmp_path):
    cases = {
        "missing_file": tmp_path / "nope.wav",
        "empty": tmp_path / "empty.wav",
        "not_audio": tmp_path / "text.wav",
        "corrupt": tmp_path / "cut.wav",
    }
    cases["empty"].write_bytes(b"")
    cases["not_audio"].write_text("hello")
    cases["corrupt"].write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    for reason, path in cases.items():
        with pytest.raises(AudioReadError) as info:
            read_audio(path)
        assert info.value.reason == reason
    try:
        import soundfile  # noqa: F401
    except ImportError:
        with pytest.raises(AudioReadError) as info:
            read_audio(float_wav(tmp_path / "float.wav"))
        assert info.value.reason == "unsupported_format"


def test_header_only_wav_is_empty_and_truncated_data_keeps_what_is_there(tmp_path):
    with pytest.raises(AudioReadError, match="no audio frames"):
        read_audio(write_wav(tmp_path / "zero.wav", np.zeros((0,)), 16000))
    full = write_wav(tmp_path / "full.wav", tone(440, 16000, seconds=0.1), 16000).read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) - 801])  # half a frame short at the end
    samples, _ = read_audio(tmp_path / "cut.wav")
    assert samples.shape[0] == 1600 - 401
