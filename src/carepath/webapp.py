"""The sample internal web app the lab deploys (release artifacts: carepath.releases).

``build_sample`` makes releases of the sample WSGI app (src/carepath/data/sample_webapp) byte for
byte reproducibly, so a version always has the same digest.
"""

from __future__ import annotations

from pathlib import Path

from carepath.releases import MANIFEST, build, check_version, sha256_file

__all__ = ["MANIFEST", "SAMPLE_APP", "build_sample", "check_version", "sha256_file"]

SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "sample_webapp"
SAMPLE_APP = "carepath-sample"


def build_sample(version: str, out_dir: Path, *, broken: bool = False) -> tuple[Path, str]:
    """Write the sample app's release ``version`` (and its ``.sha256``) to ``out_dir``; returns (path, sha256).

    ``broken`` makes a release whose health check fails (HTTP 503), to show the deploy gate.
    """
    return build(SAMPLE_APP, version, {"app.py": (SAMPLE_DIR / "app.py").read_bytes()}, out_dir,
                 selftest="fail" if broken else "pass")
