"""The release module: verified artifacts, read-only release directories, keep N, check mode."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.unit import modules

release = modules.load("carepath_release")


def run(check: bool = False, **args: object) -> dict:
    return modules.run(release, check, **args)


def artifact(tmp_path: Path, version: str, *, body: bytes = b"print('hi')\n", manifest: str | None = None,
             extra: list[tarfile.TarInfo] = ()) -> tuple[str, str]:
    """A gzipped release tarball (manifest, app.py, lib/util.py, plus ``extra`` members); returns (path, sha256)."""
    path = tmp_path / "artifacts" / f"app-{version}-{hashlib.sha256(body).hexdigest()[:8]}.tar.gz"
    path.parent.mkdir(exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        files = {"carepath-release.json": json.dumps({"version": manifest or version}).encode(),
                 "app.py": body, "lib/util.py": b"X = 1\n"}
        lib = tarfile.TarInfo("lib")
        lib.type = tarfile.DIRTYPE
        tar.addfile(lib)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


def install(tmp_path: Path, version: str, check: bool = False, **kw: object) -> dict:
    src, digest = artifact(tmp_path, version)
    return run(check=check, root=str(tmp_path / "app"), version=version, src=src, sha256=digest, **kw)


def test_a_verified_artifact_is_installed_read_only_with_a_stamp(tmp_path: Path) -> None:
    src, digest = artifact(tmp_path, "2.0.0")
    result = run(root=str(tmp_path / "app"), version="2.0.0", src=src, sha256=digest.upper())
    target = tmp_path / "app" / "releases" / "2.0.0"
    assert not result["failed"] and result["changed"] and result["installed"]
    assert result["path"] == str(target) and result["pruned"] == []
    assert (target / "app.py").read_bytes() == b"print('hi')\n"
    assert (target / "lib" / "util.py").read_bytes() == b"X = 1\n"
    modes = {p.relative_to(target).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [target, *target.rglob("*")]}
    assert modes == {".": 0o555, "lib": 0o555, "lib/util.py": 0o444, "app.py": 0o444,
                     "carepath-release.json": 0o444, ".carepath-release.json": 0o444}
    stamp = json.loads((target / ".carepath-release.json").read_text())
    assert (stamp["version"], stamp["sha256"]) == ("2.0.0", digest)
    assert sorted(os.listdir(target.parent)) == ["2.0.0"]  # no temporary directory left


def test_a_wrong_digest_installs_nothing(tmp_path: Path) -> None:
    src, digest = artifact(tmp_path, "2.0.0")
    result = run(root=str(tmp_path / "app"), version="2.0.0", src=src, sha256="0" * 64)
    assert result["failed"] and f"SHA-256 is {digest}, not the expected {'0' * 64}" in result["msg"]
    assert not (tmp_path / "app").exists()


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, link
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("etc-link", tarfile.SYMTYPE, link="/etc/passwd"), "'etc-link' is not a plain relative file"),
        (_member("hard", tarfile.LNKTYPE, link="app.py"), "'hard' is not a plain relative file"),
        (_member("{tmp}/abs-escape"), "'{tmp}/abs-escape' is not a plain relative file"),
        (_member("lib/../../../escape.py"), "'lib/../../../escape.py' is not a plain relative file"),
        (_member("./.carepath-release.json"), "uses a name carepath reserves"),
    ],
)
def test_an_unsafe_member_fails_the_install_before_anything_is_written(
        tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    member.name = member.name.format(tmp=tmp_path)  # an absolute path in this test's directory
    src, digest = artifact(tmp_path, "2.0.0", extra=[member])
    result = run(root=str(tmp_path / "app"), version="2.0.0", src=src, sha256=digest)
    assert result["failed"] and message.format(tmp=tmp_path) in result["msg"] and "nothing was installed" in result["msg"]
    assert os.listdir(tmp_path / "app" / "releases") == []  # neither the release nor its temporary directory
    assert not (tmp_path / "app" / "escape.py").exists() and not (tmp_path / "abs-escape").exists()


def test_the_manifest_must_name_the_version_installed(tmp_path: Path) -> None:
    src, digest = artifact(tmp_path, "2.0.0", manifest="9.9.9")
    result = run(root=str(tmp_path / "app"), version="2.0.0", src=src, sha256=digest)
    assert result["failed"] and "manifest says version '9.9.9', not '2.0.0'" in result["msg"]
    assert os.listdir(tmp_path / "app" / "releases") == []


def test_the_same_artifact_again_changes_nothing_and_another_one_is_refused(tmp_path: Path) -> None:
    assert install(tmp_path, "2.0.0")["changed"]
    again = install(tmp_path, "2.0.0")
    assert not again["failed"] and not again["changed"] and not again["installed"]
    src, digest = artifact(tmp_path, "2.0.0", body=b"print('rebuilt')\n")
    other = run(root=str(tmp_path / "app"), version="2.0.0", src=src, sha256=digest)
    assert other["failed"] and "already installed from a different artifact" in other["msg"]
    assert (tmp_path / "app" / "releases" / "2.0.0" / "app.py").read_bytes() == b"print('hi')\n"


def test_keep_prunes_the_oldest_by_install_time_and_never_a_protected_one(tmp_path: Path) -> None:
    releases = tmp_path / "app" / "releases"
    for version in ("2.0", "1.0", "3.0"):  # install order differs from name order
        install(tmp_path, version)
    # Directory times say the opposite of the stamps: the stamps decide.
    for age, version in enumerate(("3.0", "1.0", "2.0")):
        os.utime(releases / version, (1_000_000 + age, 1_000_000 + age))
    # By stamp 2.0 is the oldest unprotected release; by name or by directory time it would be 1.0.
    result = install(tmp_path, "4.0", keep=2, protect=["3.0"])
    assert result["changed"] and result["pruned"] == ["2.0"]
    assert sorted(os.listdir(releases)) == ["1.0", "3.0", "4.0"]
    result = install(tmp_path, "4.0", keep=1, protect=["3.0"])
    assert not result["installed"] and result["changed"] and result["pruned"] == ["1.0"]
    assert sorted(os.listdir(releases)) == ["3.0", "4.0"]


def test_leftovers_of_a_killed_install_are_removed(tmp_path: Path) -> None:
    leftover = tmp_path / "app" / "releases" / ".tmp-2.0-abc"
    (leftover / "sub").mkdir(parents=True)
    (leftover / "sub").chmod(0o555)
    install(tmp_path, "2.0")
    assert sorted(os.listdir(tmp_path / "app" / "releases")) == ["2.0"]


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    releases = tmp_path / "app" / "releases"
    result = install(tmp_path, "1.0", check=True)
    assert result["changed"] and result["installed"] and not releases.exists()
    missing = run(check=True, root=str(tmp_path / "app"), version="1.0", src=str(tmp_path / "nope.tar.gz"), sha256="ab")
    assert missing["changed"] and not missing["failed"]
    install(tmp_path, "1.0")
    install(tmp_path, "2.0")
    result = install(tmp_path, "3.0", check=True, keep=1)
    assert result["changed"] and result["pruned"] == ["2.0", "1.0"]
    assert sorted(os.listdir(releases)) == ["1.0", "2.0"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"version": "../x"}, "'../x' is not a valid directory name"),
        ({"version": "1..2"}, "'1..2' is not a valid directory name"),
        ({"version": "a b"}, "'a b' is not a valid directory name"),
        ({"keep": 0}, "keep must be at least 1"),
        ({"src": "/nonexistent/app.tar.gz"}, "release artifact /nonexistent/app.tar.gz is not on the host"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, args: dict, message: str) -> None:
    src, digest = artifact(tmp_path, "1.0")
    result = run(**{"root": str(tmp_path / "app"), "version": "1.0", "src": src, "sha256": digest, **args})
    assert result["failed"] and message in result["msg"]
    assert not (tmp_path / "app").exists()


def test_a_manifest_that_is_not_an_object_is_a_clean_failure(tmp_path: Path) -> None:
    src, digest = artifact(tmp_path, "1.0")
    # Rewrite the manifest as a JSON list (valid JSON, not an object).
    fixed = tmp_path / "list-manifest.tar.gz"
    with tarfile.open(src) as old, tarfile.open(fixed, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isfile() else None
            data = b"[]" if member.name == "carepath-release.json" else data
            if data is not None:
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
    result = run(root=str(tmp_path / "app"), version="1.0", src=str(fixed), sha256=hashlib.sha256(fixed.read_bytes()).hexdigest())
    assert result["failed"] and "is not a JSON object" in result["msg"]
    assert not (tmp_path / "app" / "releases" / "1.0").exists()
