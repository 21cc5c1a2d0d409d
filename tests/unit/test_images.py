"""Mirror discovery and image recipe digests (no image is built here)."""

from __future__ import annotations

import pytest

from carepath.errors import CarepathError
from carepath.lab import images

DEB822 = """\
Types: deb
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirrors_from_deb822(tmp_path, monkeypatch):
    monkeypatch.delenv("CAREPATH_DEBIAN_MIRROR", raising=False)
    monkeypatch.delenv("CAREPATH_DEBIAN_SECURITY_MIRROR", raising=False)
    src = tmp_path / "debian.sources"
    src.write_text(DEB822, encoding="utf-8")
    assert images.find_mirrors([src]) == images.Mirrors(
        main="http://mirror.example.org/debian", security="http://mirror.example.org/debian-security"
    )


def test_mirrors_from_one_line_sources_and_env_override(tmp_path, monkeypatch):
    monkeypatch.delenv("CAREPATH_DEBIAN_SECURITY_MIRROR", raising=False)
    src = tmp_path / "sources.list"
    src.write_text("# comment\ndeb [arch=amd64] http://m.example/debian bookworm main\n", encoding="utf-8")
    monkeypatch.delenv("CAREPATH_DEBIAN_MIRROR", raising=False)
    mirrors = images.find_mirrors([src])
    assert mirrors == images.Mirrors("http://m.example/debian", "http://m.example/debian-security")
    monkeypatch.setenv("CAREPATH_DEBIAN_MIRROR", "http://local.example/debian")
    assert images.find_mirrors([src]).main == "http://local.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CAREPATH_DEBIAN_MIRROR", raising=False)
    with pytest.raises(CarepathError, match="CAREPATH_DEBIAN_MIRROR"):
        images.find_mirrors([tmp_path / "missing.list"])


def test_recipe_digest_is_stable_and_per_release():
    assert images.recipe_digest("bookworm") == images.recipe_digest("bookworm")
    assert images.recipe_digest("bookworm") != images.recipe_digest("trixie")
    assert images.image_name("trixie") == "localhost/carepath-debian:trixie"


def test_unknown_release_is_refused():
    with pytest.raises(CarepathError, match="unknown Debian release 'sid'"):
        images.build("sid", images.Mirrors("http://x/debian", "http://x/debian-security"))
