"""Role README tables are generated from the argument specs and the catalog, and kept in step."""

from __future__ import annotations

import shutil
from pathlib import Path

from carepath import controls, docs

ROOT = Path(__file__).resolve().parents[2]


def test_variables_table_renders_defaults_and_choices():
    table = docs.variables_table(ROOT / "roles" / "firewall")
    assert "| `firewall_forward_policy` | `drop` |" in table
    assert "One of `drop`, `accept`." in table
    assert "| `firewall_flows` | 1 entry (see defaults) |" in table


def test_controls_table_marks_real_kernel_controls():
    table = docs.controls_table("os_hardening", controls.load())
    assert "| CP-OS-01 | The host does not route packets (IPv4 and IPv6 forwarding off) (real kernel only) |" in table
    assert "CP-SSH-" not in table


def test_replace_block_keeps_hand_written_text_and_appends_when_missing():
    text = "# role\n\nIntro.\n\n" + docs._BLOCK.format(name="variables", body="old\n") + "\n\n## After\n"
    out = docs.replace_block(text, "variables", "new\n")
    assert "old" not in out and "new\n<!-- END variables -->" in out
    assert out.startswith("# role\n\nIntro.") and out.endswith("## After\n")
    assert docs.replace_block("# bare\n", "controls", "x\n").endswith("x\n<!-- END controls -->\n")


def test_a_changed_spec_makes_the_readme_stale(tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(ROOT / "roles", root / "roles")
    spec = root / "roles" / "time_sync" / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("Authenticate every source", "Sign every source"), encoding="utf-8")
    stale = controls.sync(root, write=False)
    assert stale == [root / "roles" / "time_sync" / "README.md"]
