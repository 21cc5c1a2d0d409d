"""Sample release artifacts: reproducible, with a manifest; the sample WSGI app they hold; the CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tarfile
import time
from pathlib import Path
from types import ModuleType
from wsgiref.util import setup_testing_defaults

import pytest

from carepath import webapp
from carepath.cli import main
from carepath.errors import CarepathError

_now = time.time


def test_a_version_always_builds_the_same_bytes_and_another_version_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, digest = webapp.build_sample("1.2.3", tmp_path / "a")
    with monkeypatch.context() as later:  # a build an hour later, with no time in the bytes
        later.setattr(time, "time", lambda: 3600.0 + _now())
        again, digest_again = webapp.build_sample("1.2.3", tmp_path / "b")
    _, other = webapp.build_sample("1.2.4", tmp_path / "a")
    assert path.name == "carepath-sample-1.2.3.tar.gz" and path.parent == tmp_path / "a"
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest_again == digest and again.read_bytes() == path.read_bytes()
    assert other != digest
    assert (tmp_path / "a" / "carepath-sample-1.2.3.tar.gz.sha256").read_text() == f"{digest}  {path.name}\n"


@pytest.mark.parametrize(("broken", "selftest"), [(False, "pass"), (True, "fail")])
def test_the_tarball_holds_the_manifest_and_the_app(tmp_path: Path, broken: bool, selftest: str) -> None:
    path, _ = webapp.build_sample("2.0.0", tmp_path, broken=broken)
    with tarfile.open(path, "r:gz") as tar:
        assert sorted(tar.getnames()) == ["app.py", "carepath-release.json"]
        assert all(member.isfile() for member in tar.getmembers())
        manifest = json.load(tar.extractfile("carepath-release.json"))
        app = tar.extractfile("app.py").read()
    assert manifest == {"app": "carepath-sample", "version": "2.0.0", "selftest": selftest}
    assert app == (webapp.SAMPLE_DIR / "app.py").read_bytes()


@pytest.mark.parametrize("version", ["../x", "", "a b", "1..2", "-1", "x" * 65])
def test_bad_versions_are_refused(tmp_path: Path, version: str) -> None:
    with pytest.raises(CarepathError, match="is not valid"):
        webapp.check_version(version)
    with pytest.raises(CarepathError):
        webapp.build_sample(version, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_good_versions_are_accepted() -> None:
    for version in ("2.1.0", "1.0.0+build_7", "2024-05-01", "x" * 64):
        assert webapp.check_version(version) == version


def _load_app(tmp_path: Path, version: str, broken: bool = False) -> ModuleType:
    """Unpack a release as a host does and import its app.py from there."""
    path, _ = webapp.build_sample(version, tmp_path / "dist", broken=broken)
    release = tmp_path / "releases" / version
    with tarfile.open(path, "r:gz") as tar:
        tar.extractall(release, filter="data")
    spec = importlib.util.spec_from_file_location(f"sample_app_{version.replace('.', '_')}", release / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _get(app: ModuleType, path: str) -> tuple[str, dict[str, str], dict]:
    environ: dict = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    seen: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app.application(environ, start_response))
    assert int(seen["headers"]["Content-Length"]) == len(body)
    return seen["status"], seen["headers"], json.loads(body)


def test_a_good_release_is_healthy_and_names_its_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREPATH_COLOUR", "green")
    app = _load_app(tmp_path, "3.1.4")
    status, headers, body = _get(app, "/healthz")
    assert status == "200 OK" and headers["X-App-Version"] == "3.1.4"
    assert body == {"status": "ok", "version": "3.1.4", "colour": "green"}
    status, headers, body = _get(app, "/patients/7")
    assert status == "200 OK" and headers["X-App-Version"] == "3.1.4"
    assert body == {"app": "carepath-sample", "version": "3.1.4", "path": "/patients/7"}


def test_a_broken_release_fails_its_health_check_but_still_names_its_version(tmp_path: Path) -> None:
    app = _load_app(tmp_path, "6.6.6", broken=True)
    status, headers, body = _get(app, "/healthz")
    assert status == "503 Service Unavailable" and headers["X-App-Version"] == "6.6.6"
    assert body["status"] == "failing" and body["version"] == "6.6.6"
    status, headers, _ = _get(app, "/")
    assert status == "200 OK" and headers["X-App-Version"] == "6.6.6"


def test_the_cli_builds_a_sample_and_prints_its_path_and_digest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["webapp", "sample", "--version", "1.2.3", "--out", str(tmp_path)]) == 0
    path = tmp_path / "carepath-sample-1.2.3.tar.gz"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert capsys.readouterr().out == f"{path}\nsha256: {digest}\n"
    assert main(["webapp", "sample", "--version", "../x", "--out", str(tmp_path)]) == 2
    assert "release version '../x' is not valid" in capsys.readouterr().err
