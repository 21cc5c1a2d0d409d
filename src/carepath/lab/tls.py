"""A throwaway certificate authority for one lab, so TLS between lab hosts is real.

``carepath lab up`` makes a CA and, for every host, a key and a certificate whose names
(DNS subject alternative names) are the host's inventory name and its container name. They live
in the lab's state directory (never committed) and are removed by ``carepath lab down``. Real
hospitals use their own PKI instead: the roles only take file paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from carepath import procs

_DAYS = "825"


def _openssl(*args: str) -> None:
    procs.require("openssl", install_hint="apt-get install -y openssl")
    procs.run(["openssl", *args], what=f"openssl {args[0]}")


def ensure_ca(directory: Path, lab: str) -> Path:
    """The lab's CA certificate (created on first use)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = directory / "ca.crt", directory / "ca.key"
    if not (cert.exists() and key.exists()):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", _DAYS,
            "-subj", f"/O=carepath lab/CN=carepath lab {lab} CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )
    return cert


def ensure_host(directory: Path, host: str, names: Iterable[str]) -> tuple[Path, Path]:
    """A key and a CA-signed certificate for ``host`` valid for ``names`` (created on first use)."""
    cert, key, csr = directory / f"{host}.crt", directory / f"{host}.key", directory / f"{host}.csr"
    if cert.exists() and key.exists():
        return cert, key
    san = ",".join(f"DNS:{name}" for name in dict.fromkeys([host, *names]))
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/O=carepath lab/CN={host}",
    )
    extensions = directory / f"{host}.ext"
    extensions.write_text(
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        encoding="utf-8",
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.crt"), "-CAkey", str(directory / "ca.key"),
        "-CAcreateserial", "-out", str(cert), "-days", _DAYS, "-extfile", str(extensions),
    )
    csr.unlink()
    extensions.unlink()
    key.chmod(0o600)
    return cert, key
