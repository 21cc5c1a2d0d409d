"""Blue-green delivery of the sample web app on a lab of real hosts, under real load.

A load balancer (HAProxy, TLS) and two app hosts (Debian 12 and 13, gunicorn) come from the
`weblab` fixture. wrk keeps several keep-alive connections busy over HTTPS, without retries,
while releases are deployed, rolled back, refused and broken; every answer is checked.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carepath import loadgen, sitepolicy, webapp
from carepath.project import Project
from tests.conftest import BIN, ROOT, carepath, cli_env
from tests.integration.conftest import Lab, evidence_releases

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("weblab")]

APP = "carepath-sample"
STATE = f"/var/lib/carepath/webapp/{APP}/state.json"


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """The sample app's releases: 1.0.0, 2.0.0, 2.1.0 and 2.2.0 work; 3.0.0 fails its health check."""
    out = tmp_path_factory.mktemp("releases")
    built = {v: webapp.build_sample(v, out) for v in ("1.0.0", "2.0.0", "2.1.0", "2.2.0")}
    built["3.0.0"] = webapp.build_sample("3.0.0", out, broken=True)
    return built



def deploy(lab: Lab, releases: dict[str, tuple[Path, str]], version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path, digest = releases[version]
    return lab.run("deploy_webapp", "-e", f"webapp_version={version}", "-e", f"webapp_artifact_src={path}",
               "-e", f"webapp_artifact_sha256={digest}", *extra)



def state(lab: Lab, host: str) -> dict:
    return json.loads(lab.ssh(host, f"sudo cat {STATE}").stdout)


@pytest.fixture(scope="module")
def live(weblab: Lab, releases: dict[str, tuple[Path, str]]) -> Iterator[Lab]:
    """The lab with release 1.0.0 live on both app hosts."""
    proc = deploy(weblab, releases, "1.0.0")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    yield weblab


def https(lab: Lab, path: str = "/") -> subprocess.CompletedProcess[str]:
    """curl through the load balancer, trusting only the lab's CA."""
    address = lab.hosts["it-lb"]
    return subprocess.run(["curl", "-sS", "--cacert", str(lab.ca), "--resolve", f"it-lb:443:{address}",
                           "-D", "-", f"https://it-lb{path}"], capture_output=True, text=True, check=False)


def test_tls_with_the_lab_ca_hsts_and_http_redirect(live: Lab):
    answer = https(live)
    assert answer.returncode == 0, answer.stderr  # the certificate chains to the lab's CA
    headers = answer.stdout.lower()
    assert "strict-transport-security: max-age=63072000" in headers
    assert "x-app-version: 1.0.0" in headers
    assert "server:" not in headers
    plain = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                            f"http://{live.hosts['it-lb']}/x"], capture_output=True, text=True, check=False)
    assert plain.stdout.startswith("301 https://")
    # Old protocols are refused.
    old = subprocess.run(["curl", "-sS", "-k", "--tls-max", "1.1", f"https://{live.hosts['it-lb']}/"],
                         capture_output=True, text=True, check=False)
    assert old.returncode != 0


def test_deploy_rollback_refused_release_redeploy_and_reloads_under_load_lose_no_request(
        live: Lab, releases: dict[str, tuple[Path, str]]):
    windows: list[loadgen.Window] = []

    def step(action, versions: set[str], after: str) -> subprocess.CompletedProcess[str]:
        start = time.time()
        proc = action()
        windows.append(loadgen.Window(start, time.time(), frozenset(versions), after))
        return proc

    with loadgen.Load(f"https://{live.hosts['it-lb']}/", connections=8, threads=2, delay_ms=2) as load:
        first = step(lambda: deploy(live, releases, "2.0.0"), {"1.0.0", "2.0.0"}, "2.0.0")
        assert first.returncode == 0, first.stdout[-4000:]
        back = step(lambda: live.run("rollback_webapp"), {"1.0.0", "2.0.0"}, "1.0.0")
        assert back.returncode == 0, back.stdout[-4000:]
        broken = step(lambda: deploy(live, releases, "3.0.0"), {"1.0.0"}, "1.0.0")
        assert broken.returncode != 0
        assert "3.0.0 failed its health gate on it-app1" in broken.stdout, broken.stdout[-3000:]
        assert "Traffic never moved" in broken.stdout
        again = step(lambda: deploy(live, releases, "2.0.0"), {"1.0.0", "2.0.0"}, "2.0.0")
        assert again.returncode == 0, again.stdout[-4000:]
        # A configuration change reloads HAProxy while clients hold keep-alive connections.
        for _ in range(3):
            reload = step(lambda: live.ssh("it-lb", "sudo systemctl reload haproxy"), {"2.0.0"}, "2.0.0")
            assert reload.returncode == 0, reload.stderr
            time.sleep(1)
        time.sleep(1)
    result = load.result
    assert result is not None
    assert result.failed == 0, result.output
    assert {a.status for a in result.answers} == {200}
    assert len(result.answers) == result.requests > 1000
    assert "3.0.0" not in {a.version for a in result.answers}
    wrong = loadgen.unexpected_versions(result.answers, "1.0.0", windows)
    assert wrong == [], f"{len(wrong)} answers from a release not live then, first: {wrong[:3]}"
    # The refused release is marked bad on the host that tried it; history names every step.
    app1 = state(live, "it-app1")
    assert "3.0.0" in app1["bad"] and "health gate failed" in app1["bad"]["3.0.0"]["reason"]
    assert app1["colours"][app1["active"]]["version"] == "2.0.0"
    history = [json.loads(line) for line in live.ssh("it-app1", f"sudo cat /var/lib/carepath/webapp/{APP}/history.jsonl")
               .stdout.splitlines()]
    actions = [(h["action"], h["version"]) for h in history]
    assert ("rolled_back", "1.0.0") in actions and ("gate_failed", "3.0.0") in actions
    assert actions[-1] == ("activated", "2.0.0")
    # The run's evidence holds the same history, per host, with the run id the hosts recorded.
    releases_seen = evidence_releases(first)
    assert {(r["host"], r["action"], r["version"]) for r in releases_seen} >= {
        ("it-app1", "activated", "2.0.0"), ("it-app2", "activated", "2.0.0")}
    run_ids = {r["run_id"] for r in releases_seen}
    assert len(run_ids) == 1 and run_ids <= {h["run_id"] for h in history}
    assert {(r["action"], r["version"]) for r in evidence_releases(broken)} >= {("gate_failed", "3.0.0")}
    # A refused release leaves no failed unit behind: monitoring sees every host healthy.
    live.assert_healthy(when="after deploys, a rollback and a refused release")


def test_killing_the_new_colour_after_the_switch_moves_traffic_back_retrying_its_requests(
        live: Lab, releases: dict[str, tuple[Path, str]]):
    # Whatever the previous test left live, start from 2.0.0 on both hosts.
    ready = deploy(live, releases, "2.0.0")
    assert ready.returncode == 0, ready.stdout[-4000:]
    before = state(live, "it-app1")
    new_colour = "green" if before["active"] == "blue" else "blue"
    path, digest = releases["2.1.0"]
    with loadgen.Load(f"https://{live.hosts['it-lb']}/", connections=8, threads=2, delay_ms=2) as load:
        # it-app1 goes first (serial 1); the post-switch watch lasts 8 s.
        started = time.time()
        proc = subprocess.Popen(  # noqa: S603
            [str(BIN / "carepath"), "run", "deploy_webapp", "-i", str(live.inventory), "-e", "webapp_version=2.1.0",
             "-e", f"webapp_artifact_src={path}", "-e", f"webapp_artifact_sha256={digest}",
             "-e", "webapp_smoke_seconds=8"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(), cwd=ROOT)
        load.wait_for_version("2.1.0", timeout=180)
        live.ssh("it-app1", f"sudo systemctl kill -s KILL carepath-webapp-{APP}@{new_colour}")
        output, _ = proc.communicate(timeout=300)
        ended = time.time()
        time.sleep(1)
    result = load.result
    assert result is not None
    assert proc.returncode != 0, output[-4000:]
    assert "2.1.0 failed after the switch on it-app1" in output
    assert f"Traffic is back on {before['active']}" in output
    # Every request the killed colour refused or dropped unanswered was retried on the old one:
    # no error answer, no refused connection, no timeout. The one thing no proxy can retry is an
    # answer the colour was half-way through sending when it died (gunicorn writes the headers,
    # then the body): HAProxy has passed the headers on and can only close that connection (a
    # read error for wrk). The kill can land in that window (it did once in CI, 1 of 58,000);
    # two answers at once in it would mean more than that is going wrong.
    errors = result.errors
    assert (errors["status"], errors["connect"], errors["write"], errors["timeout"]) == (0, 0, 0, 0), result.output
    assert errors["read"] <= 1, result.output
    assert {a.status for a in result.answers} == {200}
    # 2.1.0 answered only while the deploy ran; 2.0.0 alone serves again after it.
    window = loadgen.Window(started, ended, frozenset({"2.0.0", "2.1.0"}), "2.0.0")
    assert loadgen.unexpected_versions(result.answers, "2.0.0", [window]) == []
    assert {a.version for a in result.answers if a.at > ended} == {"2.0.0"}
    after = state(live, "it-app1")
    assert after["active"] == before["active"]
    assert "2.1.0" in after["bad"] and "post-switch" in after["bad"]["2.1.0"]["reason"]
    # it-app2 was never touched: the deploy stopped at the first host.
    assert state(live, "it-app2")["colours"][state(live, "it-app2")["active"]]["version"] == "2.0.0"


def test_the_active_colours_survive_a_reload_and_a_reboot_of_the_load_balancer(live: Lab):
    expected = {host: state(live, host) for host in ("it-app1", "it-app2")}

    def serving() -> dict[str, str]:
        out = live.ssh("it-lb", "echo 'show stat' | sudo python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); "
                                "s.connect('/run/haproxy/admin.sock'); s.sendall(sys.stdin.read().encode()); "
                                "print(s.makefile().read())\"").stdout.splitlines()
        header = out[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in out[1:] if line]
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == f"be_{APP}" and r["svname"] != "BACKEND"}

    def assert_as_deployed() -> None:
        servers = serving()
        for host, host_state in expected.items():
            active = host_state["active"]
            idle = "green" if active == "blue" else "blue"
            assert servers[f"{host}_{active}"].startswith("UP"), servers
            assert servers[f"{host}_{idle}"] == "MAINT", servers
        answer = https(live)
        assert "x-app-version: 2.0.0" in answer.stdout.lower()

    assert_as_deployed()
    live.ssh("it-lb", "sudo systemctl reload haproxy && sleep 2")
    assert_as_deployed()
    subprocess.run(["podman", "restart", f"{live.name}-it-lb"], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and https(live).returncode != 0:
        time.sleep(1)
    time.sleep(2)  # health checks need two passes (rise 2) before a server is UP
    assert_as_deployed()


def test_a_second_deploy_of_the_same_app_is_refused_while_one_runs(live: Lab, releases: dict[str, tuple[Path, str]]):
    path, digest = releases["1.0.0"]
    # A long post-switch watch keeps the first deploy (and its lock) going while the others start,
    # however slow a busy machine makes them.
    first = subprocess.Popen(  # noqa: S603
        [str(BIN / "carepath"), "run", "deploy_webapp", "-i", str(live.inventory), "-e", "webapp_version=1.0.0",
         "-e", f"webapp_artifact_src={path}", "-e", f"webapp_artifact_sha256={digest}", "-e", "webapp_smoke_seconds=15"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(), cwd=ROOT)
    lock = f"/run/carepath/locks/webapp-{APP}.lock"
    deadline = time.monotonic() + 300
    while True:  # until the first deploy holds the lock
        read = live.ssh("it-lb", f"sudo cat {lock}", check=False)
        if read.returncode == 0 and read.stdout.strip():
            holder = json.loads(read.stdout)
            break
        if first.poll() is not None:
            raise AssertionError(f"the first deploy ended before its lock was seen:\n{first.communicate()[0][-4000:]}")
        assert time.monotonic() < deadline, "the first deploy took no lock within 300 s"
        time.sleep(0.2)
    second = deploy(live, releases, "2.0.0")
    rollback = live.run("rollback_webapp")
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output[-4000:]
    assert second.returncode != 0
    assert f"deploy of {APP} refused: run {holder['run_id']}" in second.stdout
    assert "webapp_break_lock=true" in second.stdout
    assert rollback.returncode != 0 and f"rollback of {APP} refused: run {holder['run_id']}" in rollback.stdout
    # The refused runs changed nothing: the first deploy's release is live, and the lock is gone.
    assert state(live, "it-app1")["colours"][state(live, "it-app1")["active"]]["version"] == "1.0.0"
    assert live.ssh("it-lb", f"test -e {lock}", check=False).returncode != 0


@pytest.fixture()
def artifact_server(live: Lab, releases: dict[str, tuple[Path, str]]) -> Iterator[str]:
    """The releases' folder served over HTTP on the lab network's gateway (an internal artifact server)."""
    network = json.loads(subprocess.run(["podman", "network", "inspect", f"{live.name}-net"], capture_output=True,
                                        text=True, check=True).stdout)[0]
    gateway = network["subnets"][0]["gateway"]
    with socket.socket() as probe:
        probe.bind((gateway, 0))
        port = probe.getsockname()[1]
    folder = next(iter(releases.values()))[0].parent
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", gateway, "--directory",  # noqa: S603
                               str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:  # until it listens
        try:
            socket.create_connection((gateway, port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None, f"the artifact server exited ({server.returncode})"
            assert time.monotonic() < deadline, "the artifact server did not listen within 30 s"
            time.sleep(0.1)
    yield f"http://{gateway}:{port}"
    server.terminate()
    server.wait(timeout=10)


def test_a_release_from_an_internal_url_is_checked_before_it_is_installed(
        live: Lab, releases: dict[str, tuple[Path, str]], artifact_server: str):
    live_before = state(live, "it-app1")["colours"][state(live, "it-app1")["active"]]["version"]
    wrong_digest = releases["1.0.0"][1]
    refused = live.run("deploy_webapp", "-e", "webapp_version=2.2.0",
                  "-e", f"webapp_artifact_url={artifact_server}/{releases['2.2.0'][0].name}",
                  "-e", f"webapp_artifact_sha256={wrong_digest}")
    assert refused.returncode != 0
    assert "checksum" in refused.stdout.lower()
    assert live.ssh("it-app1", f"test -e /srv/carepath/{APP}/releases/2.2.0", check=False).returncode != 0
    assert state(live, "it-app1")["colours"][state(live, "it-app1")["active"]]["version"] == live_before
    path, digest = releases["2.2.0"]
    fetched = live.run("deploy_webapp", "-e", "webapp_version=2.2.0", "-e", f"webapp_artifact_url={artifact_server}/{path.name}",
                  "-e", f"webapp_artifact_sha256={digest}")
    assert fetched.returncode == 0, fetched.stdout[-4000:]
    for host in ("it-app1", "it-app2"):
        host_state = state(live, host)
        assert host_state["colours"][host_state["active"]]["version"] == "2.2.0"


def test_a_rollback_onto_a_release_marked_bad_is_refused(live: Lab):
    before = state(live, "it-app1")
    target = [v for v in before["activations"] if v != before["colours"][before["active"]]["version"]][-1]
    refused = live.run("rollback_webapp", "-e", json.dumps({"webapp_bad_releases": [target]}))
    assert refused.returncode != 0
    assert f"back to {target} is" in refused.stdout and "refused: that release is marked bad" in refused.stdout
    assert state(live, "it-app1")["active"] == before["active"]


def test_a_rollback_reinstalls_the_earlier_release_when_its_colour_is_not_running(live: Lab):
    before = {host: state(live, host) for host in ("it-app1", "it-app2")}
    for host, host_state in before.items():
        idle = "green" if host_state["active"] == "blue" else "blue"
        live.ssh(host, f"sudo systemctl stop carepath-webapp-{APP}@{idle}")
    back = live.run("rollback_webapp")
    assert back.returncode == 0, back.stdout[-4000:]
    for host, host_state in before.items():
        idle = "green" if host_state["active"] == "blue" else "blue"
        after = state(live, host)
        assert after["active"] == idle
        earlier = [v for v in host_state["activations"] if v != host_state["colours"][host_state["active"]]["version"]][-1]
        assert after["colours"][idle]["version"] == earlier
        assert live.ssh(host, f"systemctl is-active carepath-webapp-{APP}@{idle}").stdout.strip() == "active"
    assert "x-app-version: " + after["colours"][after["active"]]["version"] in https(live).stdout.lower()


def _history(lab: Lab, host: str) -> list[dict]:
    out = lab.ssh(host, f"sudo cat /var/lib/carepath/webapp/{APP}/history.jsonl").stdout
    return [json.loads(line) for line in out.splitlines()]


def _deploy_through_runner(lab: Lab, work: Path, evidence_dir: Path,
                           extra_vars: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """deploy_webapp as AWX sends it to an execution node: ansible-runner transmit | worker | process."""
    job, node = work / "job", work / "node"
    (job / "project").mkdir(parents=True)
    (job / "env").mkdir()
    (job / "project" / "deploy.yml").write_text(
        f"- name: Deploy\n  ansible.builtin.import_playbook: {ROOT / 'playbooks' / 'deploy_webapp.yml'}\n",
        encoding="utf-8")
    (job / "env" / "extravars").write_text(json.dumps(extra_vars), encoding="utf-8")
    (job / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "CAREPATH_EVIDENCE_DIR": str(evidence_dir),
        "ANSIBLE_HOST_KEY_CHECKING": "True", "PATH": cli_env()["PATH"]}), encoding="utf-8")
    runner = str(BIN / "ansible-runner")
    pipeline = (f"{runner} transmit {job} -p deploy.yml --inventory {lab.inventory}"
                f" | {runner} worker --private-data-dir {node} --delete | {runner} process {job}")
    return subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True,
                          env=cli_env(), timeout=900, check=False)


def test_one_run_id_in_evidence_and_host_history_under_each_launcher(live: Lab, releases: dict[str, tuple[Path, str]],
                                                                     tmp_path: Path):
    """A deploy through `carepath run`, plain ansible-playbook and ansible-runner's streaming (the AWX path):
    each run's bundle, the release it recorded and the line each app host added to its history carry one
    run id (made once, carepath.runid; the deploy lock takes it from the same lookup); each names the one
    site (carepath.sitepolicy) and is signed with the one evidence key (carepath.project)."""
    site = sitepolicy.load([str(live.inventory)]).site
    public_key = Project.discover().evidence_key.with_suffix(".pub")
    def evidence(name: str) -> Path:
        return tmp_path / f"evidence-{name}"

    def extra(version: str) -> dict[str, str]:
        path, digest = releases[version]
        return {"webapp_version": version, "webapp_artifact_src": str(path), "webapp_artifact_sha256": digest}

    def as_args(version: str) -> list[str]:
        return [arg for k, v in extra(version).items() for arg in ("-e", f"{k}={v}")]

    launches = {
        "carepath-run": lambda v: subprocess.run(
            [str(BIN / "carepath"), "run", "deploy_webapp", "-i", str(live.inventory), *as_args(v)],
            capture_output=True, text=True, env=cli_env(CAREPATH_EVIDENCE_DIR=str(evidence("carepath-run"))),
            cwd=ROOT, check=False),
        "ansible-playbook": lambda v: subprocess.run(
            [str(BIN / "ansible-playbook"), "playbooks/deploy_webapp.yml", "-i", str(live.inventory), *as_args(v)],
            capture_output=True, text=True, env=cli_env(CAREPATH_EVIDENCE_DIR=str(evidence("ansible-playbook"))),
            cwd=ROOT, check=False),
        "ansible-runner": lambda v: _deploy_through_runner(live, tmp_path / "runner", evidence("ansible-runner"),
                                                           extra(v)),
    }
    seen = {}
    for name, launch in launches.items():
        # A working release that is not live and that no earlier test marked bad on either host.
        states = [state(live, host) for host in ("it-app1", "it-app2")]
        taken = {s["colours"][s["active"]]["version"] for s in states} | {v for s in states for v in s.get("bad", {})}
        version = next(v for v in ("2.0.0", "2.2.0", "1.0.0", "2.1.0") if v not in taken)
        before = {host: len(_history(live, host)) for host in ("it-app1", "it-app2")}
        proc = launch(version)
        assert proc.returncode == 0, f"{name}: " + (proc.stdout[-3000:] + proc.stderr[-2000:])
        (bundle,) = evidence(name).glob("*/bundles/*")
        run_id = json.loads((bundle / "run.json").read_text(encoding="utf-8"))["run_id"]
        events = [json.loads(line) for line in (bundle / "events.jsonl").read_text(encoding="utf-8").splitlines()]
        released = {e["data"]["release"]["run_id"] for e in events if "release" in e.get("data", {})}
        assert released == {run_id}, name
        for host, count in before.items():
            added = _history(live, host)[count:]
            assert added and {h["run_id"] for h in added} == {run_id}, (name, host, added)
        assert json.loads((bundle / "run.json").read_text(encoding="utf-8"))["site"] == site, name
        assert bundle.parent.parent.name == site, name
        verified = carepath("evidence", "verify", str(bundle), "--key", str(public_key))
        assert verified.returncode == 0, (name, verified.stdout[-2000:], verified.stderr[-2000:])
        seen[name] = run_id
    assert len(set(seen.values())) == 3, seen  # three runs, three ids
