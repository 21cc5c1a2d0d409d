"""Container ulimits never exceed what the caller may grant."""

from __future__ import annotations

import resource

from carepath.lab import podman


def test_ulimits_are_capped_by_the_hard_limits():
    limits = podman.ulimits()
    for name, rlimit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(rlimit)[1]
        assert 0 < limits[name] <= (hard if hard != resource.RLIM_INFINITY else limits[name])


def test_ulimits_follow_a_lower_hard_limit(monkeypatch):
    monkeypatch.setattr(podman.resource, "getrlimit", lambda _r: (512, 1000))
    assert podman.ulimits() == {"nofile": 1000, "nproc": 1000}
    assert podman.ulimit_args() == ["--ulimit=nofile=1000:1000", "--ulimit=nproc=1000:1000"]
