"""Release artifacts: what every blue-green delivery (web apps, HL7 engines) installs.

A release artifact is a gzipped tarball whose top level holds the app and a manifest,
``carepath-release.json`` (``{"app": ..., "version": ...}``); hosts verify its SHA-256 before
anything is unpacked (the ``carepath_release`` module). ``build`` writes one byte for byte
reproducibly, so a version always has the same digest, with its ``.sha256`` beside it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

from carepath.errors import CarepathError

MANIFEST = "carepath-release.json"
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")


def check_version(version: str) -> str:
    """A version usable as a directory name; raises a clear error otherwise."""
    if not _VERSION.match(version) or ".." in version:
        raise CarepathError(f"release version {version!r} is not valid",
                            hint="use letters, digits, '.', '+', '_' and '-' (at most 64), e.g. 2.1.0")
    return version


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build(app: str, version: str, files: dict[str, bytes], out_dir: Path, **manifest: object) -> tuple[Path, str]:
    """Write ``<app>-<version>.tar.gz`` (and its ``.sha256``) to ``out_dir``; returns (path, sha256).

    ``files`` are the release's files by name; ``manifest`` adds fields to its manifest.
    """
    check_version(version)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        document = {"app": app, "version": version, **manifest}
        _add(tar, MANIFEST, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
        for name, data in sorted(files.items()):
            _add(tar, name, data)
    _output_folder(out_dir)
    path = out_dir / f"{app}-{version}.tar.gz"
    try:
        # mtime=0 and no file name in the gzip header: the same version always has the same bytes.
        with path.open("wb") as handle, gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as gz:
            gz.write(raw.getvalue())
        digest = sha256_file(path)
        # Next to it, in sha256sum's format (`sha256sum -c` checks it).
        path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    except OSError as exc:
        raise CarepathError(f"cannot write the release {exc.filename or path}: {exc.strerror or exc}",
                            hint="remove what is in the way, or choose another folder with --out") from None
    return path, digest


def _output_folder(out_dir: Path) -> None:
    """Create the folder releases are written to, or say why it cannot be used.

    ``--out`` names a folder: a file there (a common slip, giving the tarball's name) or a
    path that cannot be created must be a message naming it, not a traceback.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise CarepathError(f"--out {out_dir} is a file, not a folder",
                            hint="give the folder to write the release into (it is created when missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CarepathError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}",
                            hint="choose a folder you may write to with --out") from None
