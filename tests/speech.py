"""Spoken digits synthesised with espeak-ng at test time: FSDD's layout (`{digit}_{speaker}_{take}.wav`), one
"speaker" per espeak voice, takes varying speed and pitch. Real speech, quick to make, never
shipped in the repository."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029")
# (words per minute, pitch 0-99) for each take: take 0 is FSDD's test index range
TAKES = ((150, 50), (120, 35), (185, 65), (165, 45), (135, 60))


def synthesise_digits(folder: Path, voices=VOICES, takes=TAKES) -> Path:
    """Write `{digit}_{speaker}_{take}.wav` for every digit, voice and take into `folder`; returns it."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder.mkdir(parents=True, exist_ok=True)

    def say(job):
        digit, speaker, take = job
        speed, pitch = takes[take]
        path = folder / f"{digit}_{speaker}_{take}.wav"
        subprocess.run(
            ["espeak-ng", "-v", voices[speaker], "-s", str(speed), "-p", str(pitch), "-w", str(path), WORDS[digit]],
            check=True,
            capture_output=True,
        )

    jobs = [(d, s, t) for d in range(len(WORDS)) for s in range(len(voices)) for t in range(len(takes))]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(say, jobs))
    return folder
