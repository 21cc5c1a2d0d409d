"""The hl7_engine role's Open Integration Engine flavour: what it renders and what it refuses.

OIE cannot be fetched on these machines, so its server never runs here: these tests run the
role's own tasks (validate, oie_render, the unit template, the deploy's refusals) with
ansible-playbook against this machine, writing only into a temporary folder.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, ROOT, cli_env

SHIPPED = "81uWxplDtB"
ADMIN = "Adm1n-S3cret-pass"
STOREPASS = "St0re-S3cret-pass"
KEYPASS = "K3y-S3cret-pass-x"
DBPASS = "Db-S3cret-pass-99"


def _config(tmp: Path) -> Path:
    cfg = tmp / "ansible.cfg"
    cfg.write_text("\n".join([
        "[defaults]", f"roles_path = {ROOT / 'roles'}", f"collections_path = {ROOT / 'playbooks/collections'}",
        "interpreter_python = auto_silent", "nocows = True", ""]))
    return cfg


def _settings(tmp: Path, **override: object) -> dict:
    channel = tmp / "adt-in.xml"
    channel.write_text("<channel><id>4b1f0c4e-0000-4000-8000-000000000001</id><name>ADT in</name></channel>\n")
    settings = {
        "hl7_engine_flavour": "oie", "hl7_engine_name": "adt", "hl7_engine_lb_group": "lbs",
        "hl7_engine_data_dir": str(tmp / "data"), "hl7_engine_root": str(tmp / "srv"),
        "hl7_engine_oie_admin_password": ADMIN, "hl7_engine_oie_keystore_storepass": STOREPASS,
        "hl7_engine_oie_keystore_keypass": KEYPASS, "hl7_engine_oie_database": "postgres",
        "hl7_engine_oie_database_urls": {"blue": "jdbc:postgresql://db1.hospital.example:5432/oie_adt_blue",
                                         "green": "jdbc:postgresql://db1.hospital.example:5432/oie_adt_green"},
        "hl7_engine_oie_database_username": "oie_adt", "hl7_engine_oie_database_password": DBPASS,
        "hl7_engine_oie_channels": [str(channel)],
    }
    settings.update(override)
    return settings


def _play(tmp: Path, settings: dict, tasks: list[dict]) -> subprocess.CompletedProcess[str]:
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python")}},
        "children": {"lbs": {"hosts": {"localhost": None}}}}}))
    playbook = tmp / "play.yml"
    playbook.write_text(yaml.safe_dump([{"name": "OIE", "hosts": "localhost", "gather_facts": False,
                                         "vars": settings, "tasks": tasks}], sort_keys=False))
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)], capture_output=True,
                          text=True, cwd=tmp, env=cli_env(ANSIBLE_CONFIG=str(_config(tmp))), check=False)


def _role(tasks_from: str, public: bool = False) -> dict:
    return {"name": tasks_from, "ansible.builtin.include_role": {"name": "hl7_engine", "tasks_from": tasks_from,
                                                                  "public": public}}


def test_each_colour_gets_its_own_ports_appdata_database_and_no_shipped_password(tmp_path: Path) -> None:
    unit = tmp_path / "unit.service"
    template = ROOT / "roles" / "hl7_engine" / "templates" / "oie-engine@.service.j2"
    proc = _play(tmp_path, _settings(tmp_path), [
        _role("validate", public=True), _role("oie_render"),
        {"name": "unit", "ansible.builtin.copy": {
            "dest": str(unit), "mode": "0644", "content": "{{ lookup('ansible.builtin.template', '" + str(template) + "') }}"}}])
    assert proc.returncode == 0, proc.stdout[-3000:]
    for secret in (ADMIN, STOREPASS, KEYPASS, DBPASS):
        assert secret not in proc.stdout + proc.stderr
    rendered = {}
    for colour, (https, http) in {"blue": (8443, 8080), "green": (8444, 8081)}.items():
        conf = tmp_path / "data" / colour / "oie" / "conf" / "mirth.properties"
        assert conf.stat().st_mode & 0o777 == 0o600 and (conf.parent.parent.stat().st_mode & 0o777) == 0o700
        props = dict(line.split(" = ", 1) for line in conf.read_text().splitlines() if " = " in line and not line.startswith("#"))
        rendered[colour] = props
        assert props["https.port"] == str(https) and props["http.port"] == str(http)
        assert props["https.host"] == props["http.host"] == "127.0.0.1"
        assert props["dir.appdata"] == str(tmp_path / "data" / colour / "oie" / "appdata")
        assert props["database"] == "postgres" and props["database.url"].endswith(f"/oie_adt_{colour}")
        assert props["keystore.storepass"] == STOREPASS and props["keystore.keypass"] == KEYPASS
        assert props["database.password"] == DBPASS and props["password.minlength"] == "12"
        assert SHIPPED not in conf.read_text()
    assert rendered["blue"]["database.url"] != rendered["green"]["database.url"]
    text = unit.read_text()
    assert "User=hl7-adt" in text and "UMask=0077" in text and "Restart=always" in text
    assert f"WorkingDirectory={tmp_path}/data/%i/oie" in text and "-jar mirth-server-launcher.jar" in text
    assert f"rel={tmp_path}/srv/%i" in text  # the colour's release, linked in at each start


@pytest.mark.parametrize(("override", "expected"), [
    ({"hl7_engine_oie_admin_password": "admin"}, "never runs on a published password"),
    ({"hl7_engine_oie_keystore_storepass": "short-pass"}, "at least 12 characters"),
    ({"hl7_engine_oie_keystore_keypass": SHIPPED}, "never runs on a published password"),
    ({"hl7_engine_oie_database": "derby",
      "hl7_engine_oie_database_urls": {"blue": "jdbc:derby:a", "green": "jdbc:derby:b"}}, "derby only with"),
    ({"hl7_engine_oie_database_urls": {"blue": "jdbc:postgresql://db1:5432/oie", "green": "jdbc:postgresql://db1:5432/oie"}},
     "the two different"),
    ({"hl7_engine_oie_database_urls": {"blue": "jdbc:mysql://db1:3306/a", "green": "jdbc:mysql://db1:3306/b"}},
     "each matching ^jdbc:postgresql"),
    ({"hl7_engine_oie_database_password": ""}, "hl7_engine_oie_database_username"),
    ({"hl7_engine_oie_channels": ["/nonexistent/adt-in.xml"]}, "missing: ['/nonexistent/adt-in.xml']"),
    ({"hl7_engine_oie_https_ports": {"blue": 12575, "green": 8444}}, "eight different ports"),
])
def test_bad_oie_settings_are_refused_before_anything_is_written(tmp_path: Path, override: dict, expected: str) -> None:
    proc = _play(tmp_path, _settings(tmp_path, **override), [_role("validate"), _role("oie_render")])
    assert proc.returncode != 0
    assert expected in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert "Nothing was changed" in proc.stdout and not (tmp_path / "data").exists()
    for secret in (ADMIN, STOREPASS, KEYPASS, DBPASS):
        assert secret not in proc.stdout + proc.stderr


def test_a_deploy_whose_artifact_is_missing_is_refused_before_any_host_is_touched(tmp_path: Path) -> None:
    settings = _settings(tmp_path, hl7_engine_version="4.5.2", hl7_engine_artifact_src=str(tmp_path / "oie_unix_4.5.2.tar.gz"),
                         hl7_engine_artifact_sha256="0" * 64)
    proc = _play(tmp_path, settings, [_role("deploy")])
    assert proc.returncode != 0
    assert f"{tmp_path}/oie_unix_4.5.2.tar.gz is not one" in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert not (tmp_path / "srv").exists() and not (tmp_path / "data").exists()
