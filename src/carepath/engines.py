"""Releases of carepath's reference HL7 interface engine (src/carepath/data/hl7_engine).

``build_sample`` makes a release the lab and the tests deploy blue-green; ``broken`` makes one
the deploy gate must refuse: ``noack`` accepts MLLP connections and never answers, ``ae``
answers every message with an application error.
"""

from __future__ import annotations

from pathlib import Path

from carepath.errors import CarepathError
from carepath.releases import build

ENGINE_DIR = Path(__file__).resolve().parent / "data" / "hl7_engine"
SAMPLE_ENGINE = "carepath-hl7-engine"
BROKEN = ("noack", "ae")


def build_sample(version: str, out_dir: Path, *, broken: str | None = None) -> tuple[Path, str]:
    """Write the reference engine's release ``version`` (and its ``.sha256``); returns (path, sha256)."""
    if broken is not None and broken not in BROKEN:
        raise CarepathError(f"--broken {broken!r} is not a known fault", hint=f"use one of: {', '.join(BROKEN)}")
    return build(SAMPLE_ENGINE, version, {"engine.py": (ENGINE_DIR / "engine.py").read_bytes()}, out_dir,
                 behaviour=broken or "ok")
