"""The one audio reader: mono, 16 kHz, float32, frequency content preserved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mger.core.audio import audio_info, read_audio, resample


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2), (22050, 1), (8000, 2), (48000, 1)])
def test_read_audio_converts_to_16k_mono(tmp_path: Path, rate: int, channels: int) -> None:
    t = np.arange(rate) / rate  # one second
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone, tone * 0.5], axis=1)[:, :channels] if channels > 1 else tone
    path = tmp_path / "x.wav"
    sf.write(str(path), data, rate, subtype="PCM_16")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.duration) == (rate, channels, 1.0)
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(audio[1000:-1000] * np.hanning(14000)))
    peak_hz = np.argmax(spectrum) * 16000 / 14000
    assert abs(peak_hz - 440) < 2
    expected_amp = 0.5 if channels == 1 else 0.375  # mean of the channels
    assert np.max(np.abs(audio[2000:-2000])) == pytest.approx(expected_amp, abs=0.01)


def test_resample_checks_arguments() -> None:
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 10), np.float32), 8000, 16000)
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10, np.float32), 0, 16000)
    x = np.ones(441, np.float32)
    assert resample(x, 44100, 16000).shape == (160,)
