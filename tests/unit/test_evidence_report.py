"""The auditor's report: built from a signed bundle, checked in a real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from pypdf import PdfReader

from carepath import controls, evidence, frameworks
from carepath.evidence.recorder import Recorder
from tests.conftest import carepath, cli_env

HOSTS = ("ward-db1", "pacs-web2")


EXCEPTED = {"control": "CP-SSH-12", "reason": "legacy <script>analyser</script>", "owner": "ops@example.org",
            "expires": "2027-03-31"}


def record(work: Path, key: Path, statuses: dict[str, dict[str, str]] | None, *, failed: bool = False) -> Path:
    """One run of site ``hospital-a`` into ``work/ev``: per host, each control's status (None: a run that
    checks no control, as a deploy)."""
    playbook = work / "site.yml"
    playbook.write_text("---\n")
    recorder = Recorder(evidence_dir=work / "ev", site="hospital-a", playbook=str(playbook), signing_key=key,
                        environ={"CAREPATH_CHANGE_TICKET": "CHG0012345"})
    recorder.start(check_mode=False, limit=None, tags=[], inventory=[])
    for host in HOSTS:
        recorder.task_result("changed", host=host, task="Write the sshd configuration", action="carepath_template",
                             tags=["cp_ssh_05", "cp_ssh_06"], result={"changed": True}, role="ssh_hardening")
        if statuses is None:
            continue
        results = [{"id": control, "status": status, **({"exception": EXCEPTED} if status == "excepted" else {})}
                   for control, status in statuses[host].items()]
        recorder.task_result("ok", host=host, task="Audit | Check the controls of ssh_hardening",
                             action="carepath_control", tags=[], role="ssh_hardening",
                             result={"carepath_controls": results})
    if failed:
        recorder.task_result("failed", host=HOSTS[1], task="Load the nftables rules", action="ansible.builtin.command",
                             tags=["cp_fw_02"], result={"msg": "nft: syntax error"})
    recorder.finish("failed" if failed else "successful",
                    {h: {"ok": 5, "changed": 1, "failures": int(failed and h == HOSTS[1]), "unreachable": 0,
                         "skipped": 0} for h in HOSTS})
    return recorder.bundle_dir


#: The run the report is of: CP-SSH-06 drifted on pacs-web2, CP-SSH-12 excepted on both hosts.
NOW = {"ward-db1": {"CP-SSH-05": "compliant", "CP-SSH-06": "compliant", "CP-SSH-12": "excepted"},
       "pacs-web2": {"CP-SSH-05": "compliant", "CP-SSH-06": "drifted", "CP-SSH-12": "excepted"}}
#: The site's previous run that checked controls: CP-SSH-05 drifted on ward-db1, CP-SSH-12 not checked.
BEFORE = {"ward-db1": {"CP-SSH-05": "drifted", "CP-SSH-06": "compliant"},
          "pacs-web2": {"CP-SSH-05": "compliant", "CP-SSH-06": "compliant"}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The report's run, after an earlier baseline run and a run that checked no control (a deploy)."""
    work = tmp_path_factory.mktemp("report")
    key = work / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    record(work, key, BEFORE)
    record(work, key, None)
    return record(work, key, NOW, failed=True), key.with_suffix(".pub")


def test_report_files_hold_every_host_and_control_with_their_references(bundle: tuple[Path, Path], tmp_path: Path):
    proc = carepath("evidence", "report", str(bundle[0]), "--key", str(bundle[1]), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report.csv").read_text())))
    assert {(r["host"], r["control"], r["status"]) for r in rows} == {
        (h, c, s) for h in HOSTS for c, s in NOW[h].items()}
    assert [r["status"] for r in rows][:3] == ["drifted", "excepted", "excepted"]  # worst first
    ssh05 = next(r for r in rows if r["control"] == "CP-SSH-05")
    assert "164.312(d)" in ssh05["hipaa"] and ssh05["changed_by_tasks"] == "Write the sshd configuration"
    assert "164.312(d)" in ssh05["hipaa_standards"].split(", ")
    assert next(r for r in rows if r["control"] == "CP-SSH-12")["exception_owner"] == "ops@example.org"
    exported = json.loads((tmp_path / "report.json").read_text())
    assert exported["summary"]["excepted"] == 2 and exported["failures"][0]["msg"] == "nft: syntax error"
    assert exported["verification"].startswith("verified")
    html = (tmp_path / "report.html").read_text()
    assert "<script>analyser" not in html and "&lt;script&gt;analyser" in html  # reasons are escaped, never run
    assert "src=" not in html and "href=" not in html and "@import" not in html  # nothing fetched: read offline


def test_a_tampered_bundle_says_so_at_the_top(bundle: tuple[Path, Path], tmp_path: Path):
    copy = tmp_path / bundle[0].name
    shutil.copytree(bundle[0], copy)
    events = copy / "events.jsonl"
    events.write_bytes(events.read_bytes().replace(b"compliant", b"drifted!!", 1))
    proc = carepath("evidence", "report", str(copy), "--key", str(bundle[1]), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0
    assert "FAILED" in json.loads((tmp_path / "out" / "report.json").read_text())["verification"]


def visible_matrix(dom: str) -> tuple[list[str], list[str], str]:
    """The controls and host columns a reader sees in the matrix of a dumped DOM, and the count line."""

    class Matrix(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[str] = []
            self.hosts: list[str] = []
            self.count = ""
            self._in_count = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found = dict(attrs)
            if tag == "tr" and "data-control" in found and "hidden" not in found:
                self.rows.append(str(found["data-control"]))
            if tag == "th" and "data-host" in found and "hidden" not in found:
                self.hosts.append(str(found["data-host"]))
            self._in_count = found.get("id") == "shown-count"

        def handle_data(self, data: str) -> None:
            if self._in_count:
                self.count += data

    parser = Matrix()
    parser.feed(dom)
    return parser.rows, parser.hosts, parser.count.strip()


def headless(tmp_path: Path) -> list[str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is installed by `make setup` (HOST_PACKAGES); run it first"
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}"]


def test_the_html_renders_in_headless_chromium(bundle: tuple[Path, Path], tmp_path: Path):
    assert carepath("evidence", "report", str(bundle[0]), "--key", str(bundle[1]), "--out", str(tmp_path)).returncode == 0
    argv = headless(tmp_path)
    page = (tmp_path / "report.html").as_uri()
    dom = subprocess.run([*argv, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<table" in dom and 'id="controls"' in dom and 'id="overview-hipaa"' in dom
    for needle in (*HOSTS, "CP-SSH-05", "CP-SSH-12", "CHG0012345", "verified", "Person or entity authentication"):
        assert needle in dom
    # The matrix as a reader meets it: every control, worst first, every host a column.
    rows, hosts, count = visible_matrix(dom)
    assert rows == ["CP-SSH-06", "CP-SSH-12", "CP-SSH-05"] and hosts == sorted(HOSTS) and count == "3 of 3 controls shown"
    shot = tmp_path / "report.png"
    subprocess.run([*argv, f"--screenshot={shot}", "--window-size=1200,1600", page],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@pytest.mark.parametrize(("fragment", "rows", "hosts"), [
    ("status=drifted", ["CP-SSH-06"], sorted(HOSTS)),
    ("status=excepted&host=ward-db1", ["CP-SSH-12"], ["ward-db1"]),
    ("status=drifted&host=ward-db1", [], ["ward-db1"]),  # drifted only on pacs-web2
    ("host=pacs-web2", ["CP-SSH-06", "CP-SSH-12", "CP-SSH-05"], ["pacs-web2"]),
    ("safeguard=" + quote("164.308(a)(5)"), None, sorted(HOSTS)),
    ("host=%E0%A4&status=drifted", ["CP-SSH-06"], sorted(HOSTS)),  # a broken part of a link is ignored
])
def test_the_matrix_filters_work_in_the_browser_without_a_network(bundle: tuple[Path, Path], tmp_path: Path,
                                                                   fragment: str, rows: list[str] | None,
                                                                   hosts: list[str]):
    """The filters run in the page's own script; a filtered view is a link (#status=...&host=...)."""
    assert carepath("evidence", "report", str(bundle[0]), "--out", str(tmp_path)).returncode == 0
    page = (tmp_path / "report.html").as_uri() + "#" + fragment
    dom = subprocess.run([*headless(tmp_path), "--dump-dom", page], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    shown, columns, count = visible_matrix(dom)
    if rows is None:  # by HIPAA standard: the controls that cite it, from the catalog
        catalog = controls.by_id(controls.load())
        rows = [c for c in ["CP-SSH-06", "CP-SSH-12", "CP-SSH-05"]
                if "164.308(a)(5)" in {frameworks.hipaa_standard(h)[0] for h in catalog[c].hipaa}]
        assert 0 < len(rows) < 3, "the fixture's controls no longer tell this filter apart"
    assert (shown, columns, count) == (rows, hosts, f"{len(rows)} of 3 controls shown")


def test_the_pdf_opens_with_the_overview(bundle: tuple[Path, Path], tmp_path: Path):
    proc = carepath("evidence", "report", str(bundle[0]), "--key", str(bundle[1]), "--out", str(tmp_path), "--pdf")
    assert proc.returncode == 0, proc.stderr
    assert f"pdf: {tmp_path / 'report.pdf'}" in proc.stdout
    reader = PdfReader(tmp_path / "report.pdf")
    first = " ".join(reader.pages[0].extract_text().split())
    assert "Overview by HIPAA Security Rule standard" in first and "Person or entity authentication" in first, first
    assert "verified" in first and "Since the site's previous run" in first
    assert "CP-SSH-06" in " ".join(page.extract_text() for page in reader.pages)


def test_pdf_without_a_browser_is_a_clear_error_and_writes_nothing(bundle: tuple[Path, Path], tmp_path: Path):
    out = tmp_path / "out"
    proc = carepath("evidence", "report", str(bundle[0]), "--out", str(out), "--pdf",
                    env=cli_env(CAREPATH_CHROMIUM=str(tmp_path / "no-such-browser")))
    assert proc.returncode != 0 and "--pdf needs a headless Chromium" in proc.stderr
    assert not out.exists()


def test_the_overview_counts_each_check_under_its_hipaa_standard_and_cis_section(bundle: tuple[Path, Path],
                                                                                 tmp_path: Path):
    assert carepath("evidence", "report", str(bundle[0]), "--out", str(tmp_path)).returncode == 0
    overview = json.loads((tmp_path / "report.json").read_text())["overview"]
    catalog = controls.by_id(controls.load())
    cells = [(host, control, status) for host in HOSTS for control, status in NOW[host].items()]
    expected: dict[str, dict[str, int]] = {}
    for _, control, status in cells:
        for standard in {frameworks.hipaa_standard(h)[0] for h in catalog[control].hipaa}:
            counts = expected.setdefault(standard, {})
            counts[status] = counts.get(status, 0) + 1
    got = {s["standard"]: {k: v for k, v in s["counts"].items() if v} for s in overview["hipaa"]}
    assert got == expected
    assert all(s["kind"] in ("Administrative", "Physical", "Technical") and s["name"] for s in overview["hipaa"])
    sections = {s["section"]: s for s in overview["cis"]}
    ssh = {frameworks.cis_section(c)[0] for c in catalog["CP-SSH-05"].cis}
    assert ssh <= set(sections) and all(sections[s]["name"] == "Access Control" for s in ssh if s.startswith("5."))


def test_changes_since_the_previous_run_are_read_from_the_ledger(bundle: tuple[Path, Path], tmp_path: Path):
    """The previous run is the last earlier one in the site's ledger that checked controls (not the deploy)."""
    assert carepath("evidence", "report", str(bundle[0]), "--key", str(bundle[1]), "--out", str(tmp_path)).returncode == 0
    since = json.loads((tmp_path / "report.json").read_text())["since_previous_run"]
    ledger = [json.loads(line)["bundle"] for line in (bundle[0].parent.parent / "ledger.jsonl").read_text().splitlines()]
    assert len(ledger) == 3 and ledger[2] == bundle[0].name
    assert since["found"] and since["run_id"] == ledger[0]  # not ledger[1], which checked no control
    assert {(c["host"], c["control"], c["before"], c["after"]) for c in since["changes"]} == {
        ("ward-db1", "CP-SSH-05", "drifted", "compliant"), ("pacs-web2", "CP-SSH-06", "compliant", "drifted"),
        ("ward-db1", "CP-SSH-12", "absent", "excepted"), ("pacs-web2", "CP-SSH-12", "absent", "excepted")}
    html = (tmp_path / "report.html").read_text()
    assert 'id="changes-since"' in html and ledger[0] in html


def test_a_previous_run_that_does_not_verify_is_not_compared(bundle: tuple[Path, Path], tmp_path: Path):
    site = tmp_path / "hospital-a"
    shutil.copytree(bundle[0].parent.parent, site)
    first = json.loads((site / "ledger.jsonl").read_text().splitlines()[0])["bundle"]
    events = site / "bundles" / first / "events.jsonl"
    events.write_bytes(events.read_bytes().replace(b'"drifted"', b'"compliant"', 1))
    out = tmp_path / "out"
    assert carepath("evidence", "report", str(site / "bundles" / bundle[0].name), "--key", str(bundle[1]),
                    "--out", str(out)).returncode == 0
    since = json.loads((out / "report.json").read_text())["since_previous_run"]
    assert not since["found"] and "the site's ledger does not verify" in since["reason"] and "changes" not in since
    assert "Nothing to compare with: the site&#39;s ledger does not verify" in (out / "report.html").read_text()


def test_a_ledger_cut_in_the_middle_is_not_compared(bundle: tuple[Path, Path], tmp_path: Path):
    """Deleting an entry would silently compare with an older run: with the key, the ledger is verified first."""
    site = tmp_path / "hospital-a"
    shutil.copytree(bundle[0].parent.parent, site)
    lines = (site / "ledger.jsonl").read_text().splitlines(keepends=True)
    (site / "ledger.jsonl").write_text(lines[0] + lines[2])
    out = tmp_path / "out"
    assert carepath("evidence", "report", str(site / "bundles" / bundle[0].name), "--key", str(bundle[1]),
                    "--out", str(out)).returncode == 0
    since = json.loads((out / "report.json").read_text())["since_previous_run"]
    assert not since["found"] and "the site's ledger does not verify" in since["reason"]


def test_each_control_is_compared_with_its_latest_earlier_result(tmp_path: Path):
    """A run in between that checked some controls on some hosts (a deploy's role, a --limit) answers for
    those only: the rest are compared with the earlier baseline (the review's case)."""
    key = tmp_path / "evidence.key"
    evidence.generate_keypair(key, key.with_suffix(".pub"))
    first = record(tmp_path, key, BEFORE)
    record(tmp_path, key, {"ward-db1": {}, "pacs-web2": {"CP-SSH-05": "compliant"}})
    now = record(tmp_path, key, NOW)
    out = tmp_path / "out"
    assert carepath("evidence", "report", str(now), "--key", str(key.with_suffix(".pub")), "--out", str(out)).returncode == 0
    since = json.loads((out / "report.json").read_text())["since_previous_run"]
    assert since["found"] and [r["run_id"] for r in since["runs"]] == [
        json.loads(line)["bundle"] for line in (now.parent.parent / "ledger.jsonl").read_text().splitlines()][1::-1]
    assert {(c["host"], c["control"], c["before"], c["after"], c["before_run"]) for c in since["changes"]} == {
        ("ward-db1", "CP-SSH-05", "drifted", "compliant", first.name),
        ("pacs-web2", "CP-SSH-06", "compliant", "drifted", first.name),
        ("ward-db1", "CP-SSH-12", "absent", "excepted", ""), ("pacs-web2", "CP-SSH-12", "absent", "excepted", "")}


@pytest.mark.parametrize(("citation", "standard"), [
    ("164.312(a)(2)(iv)", "164.312(a)(1)"), ("164.312(a)(1)", "164.312(a)(1)"), ("164.312(b)", "164.312(b)"),
    ("164.308(a)(5)(ii)(C)", "164.308(a)(5)"), ("164.308(a)(1)(ii)(D)", "164.308(a)(1)"),
    ("164.310(d)(2)(i)", "164.310(d)(1)"), ("164.312(e)(2)(ii)", "164.312(e)(1)"), ("164.312(c)(2)", "164.312(c)(1)"),
    ("164.316(b)(2)(i)", "164.316(b)(1)"), ("164.314(a)(2)(i)", "164.314(a)(1)"),
])
def test_a_hipaa_citation_falls_under_its_standard(citation: str, standard: str):
    assert frameworks.hipaa_standard(citation)[0] == standard


def test_csv_cells_never_become_spreadsheet_formulas():
    from carepath.evidence.auditor import _cell

    assert [_cell(v) for v in ("=HYPERLINK(1)", "+1", "-x", "@SUM(A1)", "ok", "", 3)] == [
        "'=HYPERLINK(1)", "'+1", "'-x", "'@SUM(A1)", "ok", "", "3"]
