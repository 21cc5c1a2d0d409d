"""Every CLI path ends in a message, never a traceback: bad output paths, a closed pipe, an aborted bundle."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from carepath import evidence
from carepath.evidence.recorder import Recorder
from tests.conftest import BIN, carepath, cli_env


def _assert_error(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("carepath: error: "), proc.stderr
    for part in parts:
        assert part in proc.stderr, proc.stderr


def test_webapp_sample_out_an_existing_file(tmp_path: Path) -> None:
    existing = tmp_path / "release.tar.gz"
    existing.write_text("not a folder")
    proc = carepath("webapp", "sample", "--version", "2.0.0", "--out", str(existing))
    _assert_error(proc, f"--out {existing} is a file, not a folder", "hint: give the folder")


def test_webapp_sample_out_an_unwritable_path() -> None:
    proc = carepath("webapp", "sample", "--version", "2.0.0", "--out", "/proc/carepath-no-such/dist")
    _assert_error(proc, "cannot create the output folder /proc/carepath-no-such/dist: No such file or directory",
                  "hint: choose a folder you may write to with --out")


def test_webapp_sample_release_path_taken_by_a_folder(tmp_path: Path) -> None:
    (tmp_path / "carepath-sample-2.0.0.tar.gz").mkdir()
    proc = carepath("webapp", "sample", "--version", "2.0.0", "--out", str(tmp_path))
    _assert_error(proc, f"cannot write the release {tmp_path / 'carepath-sample-2.0.0.tar.gz'}: Is a directory")


@pytest.mark.parametrize("key", ["/proc/carepath-no-such/evidence.key", "/proc/evidence.key"])
def test_keygen_to_an_unwritable_path(key: str) -> None:
    proc = carepath("evidence", "keygen", "--key", key)
    _assert_error(proc, f"cannot write key file {key}: ", "hint: choose a --key path in a folder you may write to")


def test_change_approve_into_a_missing_folder(tmp_path: Path) -> None:
    key = tmp_path / "approver.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    out = tmp_path / "missing" / "approval.json"
    proc = carepath("change", "approve", "--ticket", "CHG0012345", "--site", "production", "--key", str(key),
                    "--out", str(out))
    _assert_error(proc, f"cannot write --out {out}: its folder {out.parent} does not exist",
                  f"mkdir -p {out.parent}")
    assert not out.parent.exists()


def test_an_unexpected_file_system_error_names_the_path(tmp_path: Path) -> None:
    # /proc cannot be written even by root: the general handler in main() names the path and why.
    key = tmp_path / "approver.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    proc = carepath("change", "approve", "--ticket", "CHG0012345", "--site", "production", "--key", str(key),
                    "--out", "/proc/approval.json")
    _assert_error(proc, "cannot use /proc/approval.json: No such file or directory", "hint: ")


def _signed_bundles(work: Path) -> tuple[Path, Path, Path]:
    """An aborted bundle (its run was never finished; the next run sealed it) and the run that sealed it."""
    key = work / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    playbook = work / "site.yml"
    playbook.write_text("---\n")
    killed = Recorder(evidence_dir=work / "ev", site="hospital-a", playbook=str(playbook), signing_key=key,
                      environ={}, run_id="20261205T100000Z-site-aaaaaa")
    killed.start(check_mode=False, limit=None, tags=[], inventory=[])
    killed.task_result("ok", host="ward-db1", task="Audit | Check the controls of ssh_hardening",
                       action="carepath_control", tags=[], role="ssh_hardening",
                       result={"carepath_controls": [{"id": "CP-SSH-05", "status": "compliant"}]})
    later = Recorder(evidence_dir=work / "ev", site="hospital-a", playbook=str(playbook), signing_key=key,
                     environ={}, run_id="20261205T110000Z-site-bbbbbb")
    later.start(check_mode=False, limit=None, tags=[], inventory=[])
    later.finish("successful", {"ward-db1": {"ok": 1, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0}})
    return killed.bundle_dir, later.bundle_dir, key.with_suffix(".pub")


def test_report_of_an_aborted_bundle_says_it_was_aborted(tmp_path: Path) -> None:
    aborted, _, public = _signed_bundles(tmp_path)
    run = json.loads((aborted / "run.json").read_text())
    assert run["status"] == "aborted"
    out = tmp_path / "report"
    proc = carepath("evidence", "report", str(aborted), "--key", str(public), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    html = (out / "report.html").read_text()
    assert '<p class="aborted" id="aborted">This run was aborted: it was stopped before it ended' in html
    assert "sealed by the later run 20261205T110000Z-site-bbbbbb" in html
    assert '<tr><td colspan="6">not recorded (the run did not reach its end)</td></tr>' in html
    missing = [name for name in ("operator", "change", "source", "stats") if name not in run]
    assert f"Not recorded: {', '.join(missing)}." in html
    exported = json.loads((out / "report.json").read_text())
    assert exported["run"]["status"] == "aborted"
    assert exported["aborted"].startswith("This run was aborted")
    assert [(c["host"], c["control"], c["status"]) for c in exported["controls"]] == [
        ("ward-db1", "CP-SSH-05", "compliant")]
    assert exported["verification"].startswith("verified")


def test_report_of_an_aborted_bundle_without_operator_change_or_source(tmp_path: Path) -> None:
    # As an aborted run was sealed before runs had a signed opening record: run.json has only
    # what the events told (no operator, change, source, check mode or stats).
    bundle = tmp_path / "20261201T080000Z-site-cccccc"
    bundle.mkdir()
    (bundle / "events.jsonl").write_text(json.dumps({"time": "2026-12-01T08:00:00Z", "type": "run_start",
                                                     "data": {"playbook": "site.yml"}}) + "\n")
    (bundle / "run.json").write_text(json.dumps({
        "run_id": bundle.name, "site": "hospital-a", "status": "aborted", "playbook": "site.yml",
        "started": "2026-12-01T08:00:00Z", "finished": "2026-12-01T08:00:05Z", "events": {"count": 1},
        "aborted": {"sealed_by": "20261201T090000Z-site-dddddd", "trimmed_bytes": 17, "note": "killed"}}))
    out = tmp_path / "report"
    proc = carepath("evidence", "report", str(bundle), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text()
    assert ("This run was aborted: it was stopped before it ended, and only the events it recorded are shown. "
            "Its bundle was sealed by the later run 20261201T090000Z-site-dddddd. 17 bytes of an event cut off "
            "mid-write were removed. Not recorded: operator, change, source, stats.") in html
    for fact in ("Check mode (drift report)", "Operator", "Change ticket", "Source"):
        assert f"<tr><td>{fact}</td><td>not recorded</td></tr>" in html
    assert json.loads((out / "report.json").read_text())["hosts"] == {}


def test_verify_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    _, bundle, public = _signed_bundles(tmp_path)
    # As `carepath evidence verify ... | head -1` does once head has read its line: the reader is gone.
    proc = subprocess.Popen([str(BIN / "carepath"), "evidence", "verify", str(bundle), "--key", str(public), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert stderr == ""


def test_labs_coming_up_side_by_side_share_one_evidence_key(tmp_path: Path) -> None:
    # Two `carepath lab up` on a fresh checkout (the integration tests' two workers) both found no
    # key and both made one: the second was refused ("refusing to overwrite a signing key").
    import threading

    from carepath.evidence.dsse import ensure_keypair

    key = tmp_path / "keys" / "evidence.key"
    start, results, errors = threading.Barrier(8), [], []

    def up() -> None:
        start.wait()
        try:
            results.append(ensure_keypair(key, key.with_suffix(".pub")))
        except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=up) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len([r for r in results if r is not None]) == 1 and results.count(None) == 7
    assert key.stat().st_mode & 0o777 == 0o600 and ensure_keypair(key, key.with_suffix(".pub")) is None
