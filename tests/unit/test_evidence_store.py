"""The evidence store: bundles shipped whole, one ledger chain under concurrent jobs, clear refusals.

The SSH store's remote side (the tar receiver and the locked ledger append, run by sh and python3)
is exercised here through an ``ssh`` on PATH that runs the remote command locally, as sshd would;
the real sshd path is tested against a lab host in tests/integration/test_awx.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carepath import evidence, gate
from carepath.errors import CarepathError
from carepath.evidence import ENVELOPE_FILE, verify_ledger
from carepath.evidence import ledger as evidence_ledger
from carepath.evidence import store as evidence_store
from carepath.evidence.recorder import Recorder
from carepath.evidence.store import DirStore, SshStore, parse
from tests.conftest import ROOT
from tests.unit.test_evidence_bundle import make_bundle

SITE = "general-hospital"


@pytest.fixture
def local_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``ssh`` that runs the remote command here with sh, as sshd runs it with the login shell."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift\nexec sh -c "$*"\n', encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path / "evidence-host"


@pytest.mark.parametrize(("spec", "expected"), [
    (None, None), ("", None), ("none", None),
    ("/srv/evidence", DirStore(Path("/srv/evidence"))),
    ("dir:/mnt/share/evidence", DirStore(Path("/mnt/share/evidence"))),
    ("ssh://evidence01.example.org/srv/ev", SshStore(host="evidence01.example.org", path="/srv/ev")),
    ("ssh://audit@10.0.0.5:2222/srv/ev", SshStore(host="10.0.0.5", path="/srv/ev", user="audit", port=2222)),
])
def test_a_store_setting_names_a_directory_or_an_evidence_host(spec: str | None, expected: object) -> None:
    assert parse(spec) == expected


def test_ssh_options_come_from_their_own_setting() -> None:
    store = parse("ssh://h/srv/ev", "-i /runner/env/key -o 'UserKnownHostsFile=/runner/env/known hosts'")
    assert isinstance(store, SshStore)
    assert store.ssh_args == ("-i", "/runner/env/key", "-o", "UserKnownHostsFile=/runner/env/known hosts")


@pytest.mark.parametrize(("spec", "says"), [
    ("evidence", "relative store would be inside the job's own folder"),
    ("dir:evidence", "neither an absolute directory"),
    ("ssh://host", "ssh://[user@]host[:port]/absolute/path"),
    ("ssh://host:notaport/srv", "ssh://[user@]host[:port]/absolute/path"),
    ("ssh:///srv/ev", "ssh://[user@]host[:port]/absolute/path"),
])
def test_a_store_setting_that_names_nothing_usable_is_refused(spec: str, says: str) -> None:
    with pytest.raises(CarepathError) as raised:
        parse(spec)
    assert says in str(raised.value) + (raised.value.hint or "")


def _append_many(store_spec: str, root: str, names: list[str], key_bytes: bytes, path: str) -> None:
    os.environ["PATH"] = path
    key = Ed25519PrivateKey.from_private_bytes(key_bytes)
    store = parse(store_spec)
    assert store is not None
    for name in names:
        bundle = Path(root) / name
        store.ship(SITE, bundle)
        store.append(SITE, name, bundle / ENVELOPE_FILE, key)


def _raw(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


@pytest.mark.parametrize("kind", ["dir", "ssh"])
def test_jobs_finishing_at_once_keep_one_chain_in_the_store(kind: str, tmp_path: Path, local_ssh: Path) -> None:
    key = Ed25519PrivateKey.generate()
    local = tmp_path / "node"
    jobs = [[f"2026120{j}T00000{i}Z-site-job{j}run{i}" for i in range(6)] for j in range(4)]
    for names in jobs:
        for name in names:
            make_bundle(local, key, name, events=2)
    root = local_ssh if kind == "ssh" else tmp_path / "mounted"
    spec = f"ssh://evidence-host{root}" if kind == "ssh" else str(root)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(spec, str(local), names, _raw(key), os.environ["PATH"]))
               for names in jobs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0

    ledger_path = root / SITE / "ledger.jsonl"
    entries = [json.loads(line) for line in ledger_path.read_bytes().splitlines()]
    assert [e["seq"] for e in entries] == list(range(24))
    assert sorted(e["bundle"] for e in entries) == sorted(n for names in jobs for n in names)
    report = verify_ledger(ledger_path, root / SITE / "bundles", [key.public_key()])
    assert report.ok, str(report)
    assert not list((root / SITE / "bundles").glob(".incoming*"))  # nothing half-shipped left behind


@pytest.mark.parametrize("kind", ["dir", "ssh"])
def test_a_bundle_is_stored_once_and_a_different_one_of_the_same_name_is_refused(
        kind: str, tmp_path: Path, local_ssh: Path) -> None:
    key = Ed25519PrivateKey.generate()
    name = "20261205T000000Z-site-abc123"
    bundle = make_bundle(tmp_path / "node", key, name, events=2)
    store = SshStore(host="evidence-host", path=str(local_ssh)) if kind == "ssh" else DirStore(tmp_path / "mounted")
    store.ship(SITE, bundle)
    store.ship(SITE, bundle)  # a retry of the same bundle is fine
    other = make_bundle(tmp_path / "other", key, name, events=3)
    with pytest.raises(CarepathError, match="already holds a different bundle"):
        store.ship(SITE, other)


def test_an_unsealed_bundle_is_not_shipped(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    bundle = make_bundle(tmp_path / "node", key, "20261205T000000Z-site-abc123", events=2)
    (bundle / ENVELOPE_FILE).unlink()
    with pytest.raises(CarepathError, match="not sealed"):
        DirStore(tmp_path / "mounted").ship(SITE, bundle)


def _inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n", encoding="utf-8")
    (inventory / "group_vars" / "all" / "site.yml").write_text(f"carepath_site: {SITE}\n", encoding="utf-8")
    return inventory


def test_an_unreachable_store_refuses_the_run_before_any_host(tmp_path: Path, evidence_key: Path) -> None:
    evidence_store.problem.cache_clear()
    blocked = tmp_path / "ro"
    blocked.write_text("a file where the store's directory should be", encoding="utf-8")
    inventory, key = [str(_inventory(tmp_path))], str(evidence_key)
    decision = gate.decide(inventory, extra_vars={}, operator_key=key, environ={}, store=str(blocked))
    assert not decision.accepted
    assert any("evidence store cannot take this run's evidence" in p and str(blocked) in p for p in decision.problems)
    fine = gate.decide(inventory, extra_vars={}, operator_key=key, environ={}, store=str(tmp_path / "ok"))
    assert fine.accepted, fine.problems
    bad = gate.decide(inventory, extra_vars={}, operator_key=key, environ={}, store="ssh://nowhere")
    assert any("ssh://[user@]host[:port]/absolute/path" in p for p in bad.problems)


def test_a_store_without_a_signing_key_is_refused(tmp_path: Path) -> None:
    """Only signed bundles are stored: without the key, the run's evidence would die with the node."""
    evidence_store.problem.cache_clear()
    decision = gate.decide([str(_inventory(tmp_path))], extra_vars={}, operator_key=str(tmp_path / "none.key"),
                           environ={}, store=str(tmp_path / "store"))
    assert any("no evidence signing key" in p for p in decision.problems), decision.problems


def test_a_host_that_would_be_an_ssh_option_is_refused() -> None:
    with pytest.raises(CarepathError):
        parse("ssh://-oProxyCommand=touch%20x/srv/ev")


@pytest.mark.parametrize("kind", ["dir", "ssh"])
def test_a_retried_append_lists_the_bundle_once(kind: str, tmp_path: Path, local_ssh: Path) -> None:
    """An append whose answer was lost (the entry written, the job told otherwise) is retried safely."""
    key = Ed25519PrivateKey.generate()
    first = make_bundle(tmp_path / "node", key, "20261205T000000Z-site-aaa111", events=2)
    second = make_bundle(tmp_path / "node", key, "20261205T000001Z-site-bbb222", events=2)
    store = SshStore(host="evidence-host", path=str(local_ssh)) if kind == "ssh" else DirStore(tmp_path / "mounted")
    root = local_ssh if kind == "ssh" else tmp_path / "mounted"
    for bundle in (first, first, second, first):
        store.ship(SITE, bundle)
        entry = store.append(SITE, bundle.name, bundle / ENVELOPE_FILE, key)
        assert entry["bundle"] == bundle.name
    entries = [json.loads(line) for line in (root / SITE / "ledger.jsonl").read_bytes().splitlines()]
    assert [e["bundle"] for e in entries] == [first.name, second.name]
    assert verify_ledger(root / SITE / "ledger.jsonl", root / SITE / "bundles", [key.public_key()]).ok


def test_a_stalled_store_times_out_and_frees_the_job(tmp_path: Path, local_ssh: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another job holding the ledger's lock forever (a node gone mid-append) does not hold this one."""
    import fcntl
    import time

    key = Ed25519PrivateKey.generate()
    bundle = make_bundle(tmp_path / "node", key, "20261205T000000Z-site-aaa111", events=2)
    (local_ssh / SITE).mkdir(parents=True)
    monkeypatch.setenv("CAREPATH_EVIDENCE_STORE_TIMEOUT", "2")
    with open(local_ssh / SITE / "ledger.jsonl", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        began = time.monotonic()
        with pytest.raises(CarepathError) as raised:
            SshStore(host="evidence-host", path=str(local_ssh)).append(SITE, bundle.name, bundle / ENVELOPE_FILE, key)
        assert time.monotonic() - began < 15
    assert "append" in str(raised.value)
    assert (local_ssh / SITE / "ledger.jsonl").read_bytes() == b""


def test_an_interrupted_copy_in_the_store_is_not_taken_for_a_bundle(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    store = DirStore(tmp_path / "mounted")
    bundle = make_bundle(tmp_path / "node", key, "20261205T000000Z-site-aaa111", events=2)
    store.ship(SITE, bundle)
    store.append(SITE, bundle.name, bundle / ENVELOPE_FILE, key)
    # A job killed mid-copy leaves its temporary folder behind, with or without the envelope.
    for name in (".incoming.x.abc123", ".incoming.y.def456"):
        left = make_bundle(tmp_path / "mounted" / SITE / "bundles", key, "20261205T000009Z-site-ccc333", events=1)
        left.rename(left.parent / name)
    (tmp_path / "mounted" / SITE / "bundles" / ".incoming.y.def456" / ENVELOPE_FILE).unlink()
    report = verify_ledger(tmp_path / "mounted" / SITE / "ledger.jsonl", tmp_path / "mounted" / SITE / "bundles",
                           [key.public_key()])
    assert report.ok, str(report)


@pytest.fixture
def evidence_key(tmp_path: Path) -> Path:
    path = tmp_path / "evidence.key"
    evidence.generate_keypair(path, path.with_suffix(".pub"))
    return path


def _recorder(evidence_dir: Path, key_path: Path, store: DirStore) -> Recorder:
    return Recorder(evidence_dir=evidence_dir, site=SITE, playbook=str(ROOT / "playbooks" / "site.yml"),
                    signing_key=key_path, store=store)


def test_a_run_ships_its_bundle_and_lists_it_in_the_stores_ledger_only(tmp_path: Path, evidence_key: Path) -> None:
    store = DirStore(tmp_path / "store")
    recorder = _recorder(tmp_path / "node", evidence_key, store)
    recorder.start(check_mode=False, limit=None, tags=[], inventory=[])
    outcome = recorder.finish("successful", {})
    assert outcome["ledger"] == f"{store.root}/{SITE}/ledger.jsonl"
    stored = store.root / SITE / "bundles" / recorder.run_id
    assert outcome["stored"] == str(stored)
    assert sorted(p.name for p in stored.iterdir()) == sorted(
        p.name for p in Path(outcome["bundle"]).iterdir())
    assert json.loads((stored / "run.json").read_text())["store"] == str(store.root)
    assert not recorder.ledger_path.exists()  # the site's one ledger is the store's
    assert verify_ledger(store.root / SITE / "ledger.jsonl", store.root / SITE / "bundles").ok


def test_a_bundle_the_store_did_not_take_is_shipped_by_the_next_run(tmp_path: Path, evidence_key: Path) -> None:
    node, store_root = tmp_path / "node", tmp_path / "store"
    store_root.mkdir()
    (store_root / SITE).write_text("not a directory yet", encoding="utf-8")  # the store fails this run
    first = _recorder(node, evidence_key, DirStore(store_root))
    first.start(check_mode=False, limit=None, tags=[], inventory=[])
    outcome = first.finish("successful", {})
    assert outcome["signed"] and outcome["ledger"] is None
    assert any("did not take" in w and first.run_id in w for w in first.warnings)
    assert (node / SITE / "unshipped" / first.run_id).exists()

    (store_root / SITE).unlink()
    second = _recorder(node, evidence_key, DirStore(store_root))
    second.start(check_mode=False, limit=None, tags=[], inventory=[])
    assert second.shipped == [first.run_id]
    second.finish("successful", {})
    entries = [json.loads(line) for line in (store_root / SITE / "ledger.jsonl").read_bytes().splitlines()]
    assert [e["bundle"] for e in entries] == [first.run_id, second.run_id]
    assert not (node / SITE / "unshipped" / first.run_id).exists()


class _AppendFails:
    """A store that takes the bundle, then fails before its ledger lists it (the store went away between)."""

    def __init__(self, store: DirStore | SshStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def append(self, *args: object) -> dict[str, object]:
        raise CarepathError("the store went away")


def _run_once(node: Path, key: Path, store: object) -> Recorder:
    recorder = Recorder(evidence_dir=node, site=SITE, playbook=str(ROOT / "playbooks" / "site.yml"),
                        signing_key=key, store=store)  # type: ignore[arg-type]
    recorder.start(check_mode=False, limit=None, tags=[], inventory=[])
    recorder.finish("successful", {})
    return recorder


def _ledger(root: Path) -> list[str]:
    return [json.loads(line)["bundle"] for line in (root / SITE / "ledger.jsonl").read_bytes().splitlines()]


@pytest.mark.parametrize("kind", ["dir", "ssh"])
def test_a_stored_bundle_whose_ledger_append_failed_is_listed_by_the_sites_next_run(
        kind: str, tmp_path: Path, local_ssh: Path, evidence_key: Path) -> None:
    """A job's bundle reached the store, then its ledger append failed, on a node deleted since: the job
    left a signed marker in the store, and the site's next run, from another node, lists the bundle."""
    root = local_ssh if kind == "ssh" else tmp_path / "mounted"
    store = SshStore(host="evidence-host", path=str(root)) if kind == "ssh" else DirStore(root)
    first = _run_once(tmp_path / "node1", evidence_key, _AppendFails(store))
    assert any("did not list" in w and "the site's next run with this key list it" in w for w in first.warnings), \
        first.warnings
    assert (root / SITE / "bundles" / first.run_id / ENVELOPE_FILE).exists()
    assert (root / SITE / "unlisted" / f"{first.run_id}.json").exists()
    assert not (root / SITE / "ledger.jsonl").exists()

    second = _run_once(tmp_path / "node2", evidence_key, store)
    assert second.relisted == [first.run_id]
    third = _run_once(tmp_path / "node3", evidence_key, store)
    assert third.relisted == []  # listed once; the marker of a listed bundle is cleared
    assert not (root / SITE / "unlisted" / f"{first.run_id}.json").exists()
    assert _ledger(root) == [first.run_id, second.run_id, third.run_id]
    public = evidence.load_public_key(evidence_key.with_suffix(".pub"))
    # (These bare runs have no per-host stats, which verify reports as incomplete records: not checked here.)
    report = verify_ledger(root / SITE / "ledger.jsonl", root / SITE / "bundles", [public])
    assert [f for f in report.findings if not f.file.endswith("/run.json")] == [], str(report)


@pytest.mark.parametrize("kind", ["dir", "ssh"])
def test_only_a_signed_marker_gets_a_bundle_listed_late(
        kind: str, tmp_path: Path, local_ssh: Path, evidence_key: Path) -> None:
    """A writer of the store without the key cannot get anything listed: a ledger cut short leaves its
    bundles unlisted (verify keeps reporting them), and a marker another key signed, or one copied from
    another site, is refused."""
    root = local_ssh if kind == "ssh" else tmp_path / "mounted"
    store = SshStore(host="evidence-host", path=str(root)) if kind == "ssh" else DirStore(root)
    runs = [_run_once(tmp_path / f"node{n}", evidence_key, store).run_id for n in range(2)]
    ledger_path = root / SITE / "ledger.jsonl"
    ledger_path.write_bytes(ledger_path.read_bytes().splitlines(keepends=True)[0])  # the second entry cut
    # A marker for the cut bundle, signed by another key; and one of this key, copied from another site.
    other = Ed25519PrivateKey.generate()
    envelope = (root / SITE / "bundles" / runs[1] / ENVELOPE_FILE).read_bytes()
    (root / SITE / "unlisted").mkdir()
    (root / SITE / "unlisted" / f"{runs[1]}.json").write_bytes(
        evidence_store.unlisted_marker(SITE, runs[1], envelope, other, "forged"))
    later = _run_once(tmp_path / "node9", evidence_key, store)
    assert later.relisted == []
    assert any(runs[1] in w and "not acted on" in w for w in later.warnings), later.warnings
    assert _ledger(root) == [runs[0], later.run_id]
    report = verify_ledger(ledger_path, root / SITE / "bundles")
    assert [(f.file, f.code) for f in report.findings] == [(f"{runs[1]}/{ENVELOPE_FILE}", "ledger.unlisted")]

    key = evidence.load_private_key(evidence_key)
    public = key.public_key()
    right = evidence_store.unlisted_marker(SITE, runs[1], envelope, key, "append failed")
    assert evidence_store.marker_problem(right, envelope, SITE, runs[1], public) is None
    for marker, site, run_id, sealed, says in [
        (right, "another-site", runs[1], envelope, "another site"),
        (right, SITE, runs[0], envelope, "another site or run"),
        (right, SITE, runs[1], envelope.replace(b"{", b"{ ", 1), "another bundle"),
        (evidence_store.unlisted_marker(SITE, runs[1], envelope, other, "x"), SITE, runs[1], envelope, "signed only"),
        (b"[" * 100000, SITE, runs[1], envelope, "not JSON"),
    ]:
        assert says in (evidence_store.marker_problem(marker, sealed, site, run_id, public) or ""), says


def test_a_store_that_cannot_be_read_for_markers_never_costs_the_run_its_evidence(
        tmp_path: Path, evidence_key: Path) -> None:
    store = DirStore(tmp_path / "mounted")

    class Broken:
        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def unlisted(self, site: str) -> dict[str, tuple[bytes, bytes]]:
            raise RuntimeError("a share that answers nonsense")

    run = _run_once(tmp_path / "node", evidence_key, Broken())
    assert any("could not read the evidence store's markers" in w and "nonsense" in w for w in run.warnings)
    assert _ledger(store.root) == [run.run_id]
    # Markers the program cannot read as plain files (a FIFO, a link) are passed over, not waited on.
    folder = store.root / SITE / "unlisted"
    folder.mkdir()
    os.mkfifo(folder / "20261201T000000Z-site-fifo01.json")
    (folder / "20261201T000000Z-site-link01.json").symlink_to("/dev/zero")
    assert store.unlisted(SITE) == {}


def test_odd_store_contents_never_cost_a_run_its_evidence(tmp_path: Path, evidence_key: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Ledger lines that are JSON but no entry (an array naming the bundle, an entry without seq) are
    never taken for this bundle's entry: the run cannot chain on them and says so, its bundle marked for
    a later run (no crash, no evidence lost); an evidence host whose login shell prints a banner fails the append with a clear
    reason, and the bundle stays on the node, marked for the next run."""
    store = DirStore(tmp_path / "mounted")
    first = _run_once(tmp_path / "node", evidence_key, store)
    envelope = (store.root / SITE / "bundles" / first.run_id / ENVELOPE_FILE).read_bytes()
    digest = evidence_store.sha256_hex(envelope)
    with open(store.root / SITE / "ledger.jsonl", "ab") as ledger_file:
        ledger_file.write(json.dumps([first.run_id, digest]).encode() + b"\n")
        ledger_file.write(json.dumps({"bundle": "x", "bundle_digest": digest}).encode() + b"\n")
    second = _run_once(tmp_path / "node", evidence_key, store)
    assert second.marked == [second.run_id]
    assert any("last ledger line is unreadable" in w and "carepath evidence verify" in w for w in second.warnings)
    assert second.run_id not in (store.root / SITE / "ledger.jsonl").read_text(encoding="utf-8")
    with open(store.root / SITE / "ledger.jsonl", "rb") as handle:
        assert evidence_ledger.listed_entry(handle, "x", digest) is None  # no seq: no entry
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(json.dumps(["y", digest]).encode() + b"\n")
    with open(odd, "rb") as handle:
        assert evidence_ledger.listed_entry(handle, "y", digest) is None  # an array naming it: passed over

    bin_dir = tmp_path / "bannerbin"
    bin_dir.mkdir()
    banner = bin_dir / "ssh"
    banner.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift\necho "Welcome to the evidence host"\n'
                      'exec sh -c "$*"\n', encoding="utf-8")
    banner.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    remote = tmp_path / "evidence-host"
    run = Recorder(evidence_dir=tmp_path / "node2", site=SITE, playbook=str(ROOT / "playbooks" / "site.yml"),
                   signing_key=evidence_key, store=SshStore(host="evidence-host", path=str(remote)))
    run.start(check_mode=False, limit=None, tags=[], inventory=[])
    assert any("markers" in w for w in run.warnings)  # the banner spoils the markers' answer too: said
    outcome = run.finish("successful", {})
    assert outcome["signed"] and outcome["ledger"] is None
    assert any("login shell" in w for w in run.warnings), run.warnings
    assert (tmp_path / "node2" / SITE / "unshipped" / run.run_id).exists()


def test_a_marker_whose_bundle_never_reached_the_store_is_said_every_run(tmp_path: Path, evidence_key: Path) -> None:
    store = DirStore(tmp_path / "mounted")

    class ShipFails:
        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def ship(self, *args: object) -> None:
            raise CarepathError("cut off while copying")

    lost = _run_once(tmp_path / "node1", evidence_key, ShipFails())
    assert lost.marked == [lost.run_id]
    later = _run_once(tmp_path / "node2", evidence_key, store)
    assert later.relisted == []
    assert any(lost.run_id in w and "never reached the store or was removed" in w for w in later.warnings)
