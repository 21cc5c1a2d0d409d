"""The ``carepath`` command: ``lab``, ``run``, ``drift`` and ``controls``."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from carepath import __version__
from carepath.errors import CarepathError
from carepath.lab import topology
from carepath.lab.lab import HostState, LabFiles
from carepath.lab.topology import Topology
from carepath.project import Project


def _default_topology() -> Path:
    return Path(str(resources.files("carepath") / "data" / "lab-topology.yml"))


def _lab_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topology", type=Path, default=None,
        help="lab topology YAML (hosts, groups, Debian release); default: the built-in three-host lab",
    )
    parser.add_argument(
        "--inventory", type=Path, default=None,
        help="directory to write the lab inventory to (default: inventories/lab)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carepath",
        description="Ansible-driven delivery for hospital infrastructure.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"carepath {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lab = commands.add_parser("lab", help="a local lab of Debian systemd hosts reached over SSH")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    up = lab_commands.add_parser("up", help="build images if needed, start the hosts, write the inventory")
    _lab_args(up)
    up.add_argument("--rebuild-images", action="store_true", help="rebuild the base images even if current")
    down = lab_commands.add_parser("down", help="remove the lab's containers, network, key and inventory")
    _lab_args(down)
    down.add_argument("--images", action="store_true", help="also remove the cached base images")
    status = lab_commands.add_parser("status", help="show the lab's hosts (exit 1 when it is not up)")
    _lab_args(status)
    imgs = lab_commands.add_parser("images", help="build the base images (bookworm, trixie) if out of date")
    imgs.add_argument("--release", action="append", help="only this release (repeatable)")
    imgs.add_argument("--rebuild", action="store_true", help="rebuild even if current")

    run = commands.add_parser(
        "run", help="run a playbook from playbooks/ through ansible-runner",
        description="Run a playbook through ansible-runner with a fresh private data dir; "
        "artifacts are kept under .carepath/runs/<run id>/.",
    )
    run.add_argument("playbook", help="playbook name (e.g. site) or path")
    run.add_argument("-i", "--inventory", type=Path, help="inventory (default: the lab's)")
    run.add_argument("-C", "--check", action="store_true", help="don't change anything; report what would")
    run.add_argument("-D", "--diff", action="store_true", help="show the differences in changed files")
    run.add_argument("-l", "--limit", help="limit to a host pattern")
    run.add_argument("-t", "--tags", help="only run tasks with these tags")
    run.add_argument("--skip-tags", help="skip tasks with these tags")
    run.add_argument("-e", "--extra-vars", action="append", default=[], help="extra variables (repeatable)")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more output (repeatable)")
    run.add_argument("--vault-password-file", type=Path, help="file (or script) giving the vault password")
    run.add_argument("--ticket", help="the approved change ticket (required for protected inventories)")
    run.add_argument("--approval", type=Path, help="the signed approval of the ticket (`carepath change approve`)")
    drift = commands.add_parser(
        "drift", help="report, per host and control, compliant / drifted / excepted (a check-mode run)",
        description="Run a playbook in check mode and report every control per host, from the run's signed "
        "evidence (verified with the evidence key's .pub); or report from any run's bundle with --bundle. "
        "Exit 0: no drift; 1: drift or failed checks; 2: no control checked. The JSON report is kept in the "
        "run's artifacts (with --bundle: in reports/ beside the bundles) as drift.json.",
    )
    drift.add_argument("-i", "--inventory", type=Path, help="inventory (default: the lab's)")
    drift.add_argument("-l", "--limit", help="limit to a host pattern")
    drift.add_argument("-t", "--tags", help="only these controls or roles (e.g. cp_ssh_05, ssh_hardening)")
    drift.add_argument("-e", "--extra-vars", action="append", default=[], help="extra variables (repeatable)")
    drift.add_argument("--playbook", default="site", help="playbook to check (default: site)")
    drift.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    drift.add_argument("--all", action="store_true", help="list compliant controls too")
    drift.add_argument("--bundle", type=Path, help="report from this run bundle instead of running (e.g. from the store)")
    drift.add_argument("--key", type=Path, help="public evidence key to verify the bundle with "
                       "(default: the evidence key's .pub, when there is one)")

    evidence = commands.add_parser("evidence", help="audit evidence: signing keys, offline verification")
    ev_commands = evidence.add_subparsers(dest="evidence_command", required=True, metavar="ACTION")
    keygen = ev_commands.add_parser("keygen", help="create an ed25519 signing key pair (private key mode 0600)")
    keygen.add_argument(
        "--key", type=Path, default=None,
        help="private key path (default: $CAREPATH_EVIDENCE_KEY, else keys/evidence.key in carepath's state folder: "
             "$CAREPATH_STATE_DIR, else .carepath/ in the checkout or, outside one, in the working folder; "
             "never inside the repository)",
    )
    verify = ev_commands.add_parser(
        "verify", help="verify a run bundle or a site ledger offline, against pinned public keys",
        description="Exit 0 when everything verifies; 1 with the first bad record named otherwise.",
    )
    verify.add_argument("target", type=Path,
                        help="a run bundle directory, or a ledger file (its bundles beside it, or --bundles)")
    verify.add_argument("--key", type=Path, action="append", required=True, help="a trusted public key (repeatable)")
    verify.add_argument("--bundles", type=Path,
                        help="the directory of bundles a ledger lists (default: bundles/ beside the ledger)")
    verify.add_argument(
        "--witness", type=Path, action="append",
        help="with a ledger: a file holding the ledger's witness lines (e.g. the log collector's file for the "
        "controller, tag carepath-ledger; repeatable): an entry rewritten or cut off the end fails",
    )
    verify.add_argument("--site", help="with --witness: the site whose lines to compare (default: the ledger's folder)")
    verify.add_argument(
        "--approver-key", type=Path, action="append",
        help="a protected site's pinned approver public key (repeatable): every run must carry an approval "
        "signed by one of them, for its ticket, site and time, and not by the run's own key",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")

    report = ev_commands.add_parser(
        "report", help="the auditor's report of a run bundle: HTML, CSV and JSON (and PDF)",
        description="Writes report.html, report.csv and report.json (default: into reports/<run id> beside the "
        "site's bundles): where the site stands per HIPAA standard and CIS section, what changed since the "
        "site's previous run (from the ledger beside the bundle), and a hosts x controls matrix with filters "
        "that work offline. With --key the bundle (and the previous run's) is verified first and the outcome "
        "shown at the top. --pdf also prints report.pdf through headless Chromium.",
    )
    report.add_argument("bundle", type=Path, help="a run bundle directory")
    report.add_argument("--key", type=Path, action="append", help="a trusted public key (repeatable)")
    report.add_argument("--out", type=Path, help="output folder (default: BUNDLE/../../reports/<run id>)")
    report.add_argument("--pdf", action="store_true", help="also write report.pdf (needs chromium; A4)")

    change = commands.add_parser("change", help="change control: approve a ticket for a protected inventory")
    ch_commands = change.add_subparsers(dest="change_command", required=True, metavar="ACTION")
    approve = ch_commands.add_parser(
        "approve", help="sign an approval of a change ticket for runs against one site",
        description="The approver (not the operator: two-person rule) signs with their own ed25519 key; "
        "the operator passes the file to `carepath run --ticket ID --approval FILE`.",
    )
    approve.add_argument("--ticket", required=True, help="the change ticket id, e.g. CHG0012345")
    approve.add_argument("--site", required=True, help="the protected inventory's name (carepath_site, or its folder)")
    approve.add_argument("--key", type=Path, required=True, help="the approver's private key")
    approve.add_argument("--hours", type=float, default=24, help="how long the approval is valid (default 24)")
    approve.add_argument("--out", type=Path, required=True, help="where to write the approval")

    webapp = commands.add_parser("webapp", help="internal web apps: release artifacts (deploy with playbooks/deploy_webapp.yml)")
    wa_commands = webapp.add_subparsers(dest="webapp_command", required=True, metavar="ACTION")
    sample = wa_commands.add_parser(
        "sample", help="build a release of the sample WSGI app (for the lab and the tests)",
        description="Writes carepath-sample-VERSION.tar.gz (reproducible: a version always has the same "
        "SHA-256) and prints its path and digest.",
    )
    sample.add_argument("--version", required=True, help="the release version, e.g. 2.0.0")
    sample.add_argument("--broken", action="store_true", help="a release whose health check fails (HTTP 503)")
    sample.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default: dist/)")

    hl7 = commands.add_parser("hl7", help="HL7 interface engines: reference engine releases, test messages over MLLP")
    hl7_commands = hl7.add_subparsers(dest="hl7_command", required=True, metavar="ACTION")
    hl7_sample = hl7_commands.add_parser(
        "sample", help="build a release of the reference engine (for the lab and the tests)",
        description="Writes carepath-hl7-engine-VERSION.tar.gz (reproducible: a version always has the same "
        "SHA-256) and prints its path and digest.",
    )
    hl7_sample.add_argument("--version", required=True, help="the release version, e.g. 2.0.0")
    hl7_sample.add_argument("--broken", choices=["noack", "ae"],
                            help="a release the gate must refuse: noack never answers, ae answers AE")
    hl7_sample.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default: dist/)")
    send = hl7_commands.add_parser(
        "send", help="send synthetic test traffic to an engine over MLLP and count the ACKs",
        description="Each sender keeps one connection, sends one message at a time (unique MSH-10 "
        "<sender>-<sequence>) and resends a message until it is ACKed. Messages are synthetic: no patient data.",
    )
    send.add_argument("host", help="the engine or its load balancer")
    send.add_argument("--port", type=int, default=2575, help="MLLP port (default: 2575)")
    amount = send.add_mutually_exclusive_group()
    amount.add_argument("--count", type=int, help="messages per sender (default: 10)")
    amount.add_argument("--duration", type=float, help="send for this many seconds instead")
    send.add_argument("--senders", type=int, default=1, help="concurrent senders, one connection each (default: 1)")
    send.add_argument("--rate", type=float, help="messages per second in all (default: as fast as ACKs come)")
    send.add_argument("--ack-timeout", type=float, default=5.0, help="seconds to wait for an ACK before resending")
    send.add_argument("--give-up-after", type=float, default=30.0,
                      help="seconds a message is retried without an ACK before the sender stops (default: 30)")
    send.add_argument("--ca", type=Path, help="speak TLS, checking the engine's certificate against this CA")
    send.add_argument("--server-name", help="the name the certificate must hold (default: the host)")
    send.add_argument("--prefix", default="CPSEND", help="sending application prefix (MSH-3; default: CPSEND)")

    demo = commands.add_parser(
        "demo", help="the three jobs on the built-in lab, step by step, with a summary (make demo)",
        description="Starts the lab; hardens it; plants drift, finds it with `carepath drift` and repairs it; "
        "verifies the evidence and writes the auditor's report (HTML and PDF); deploys a web app release "
        "blue-green under load and rolls it back; cuts an HL7 engine over under MLLP load and rolls it back. "
        "Ends with a summary: the numbers, where the report is, what to try next. A second demo reuses the lab, "
        "the releases and the hardening of the same hosts.",
    )
    _lab_args(demo)
    dist = commands.add_parser(
        "dist", help="build the carepath.core collection and the carepath wheel (for AWX / Automation Platform)",
    )
    dist.add_argument("--out", type=Path, default=Path("dist"), help="folder for the artifacts (default: dist)")
    dist.add_argument("--base-image", default=None,
                      help="the execution environment's base image (default: Automation Platform's ee-minimal-rhel9)")

    ctl = commands.add_parser("controls", help="the control catalog: list, or sync what is derived from it")
    ctl_commands = ctl.add_subparsers(dest="controls_command", required=True, metavar="ACTION")
    ctl_commands.add_parser("list", help="print the control table")
    ctl_commands.add_parser("sync", help="regenerate audit tasks, task tags and roles/CONTROLS.md")
    ctl_commands.add_parser("check", help="exit 1 when a derived file disagrees with the catalog")
    parser.epilog = "every command (carepath COMMAND [ACTION] --help for its options):\n" + "\n".join(
        f"  {name:<26} {text}" for name, text in command_list(parser))
    return parser


def command_list(parser: argparse.ArgumentParser, prefix: str = "carepath") -> list[tuple[str, str]]:
    """Every runnable command under ``parser`` with its one-line help, in the order they were added."""
    found: list[tuple[str, str]] = []
    for action in parser._actions:  # argparse keeps subcommands only here  # noqa: SLF001
        if not isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}  # noqa: SLF001
        for name, sub in action.choices.items():
            nested = command_list(sub, f"{prefix} {name}")
            found += nested or [(f"{prefix} {name}", helps.get(name, ""))]
    return found


def _cmd_demo(project: Project, args: argparse.Namespace) -> int:
    from carepath.demo import Demo

    topo, files = _lab_context(project, args)
    return Demo(project, topo, files, topology_file=args.topology).run()


def _cmd_dist(project: Project, args: argparse.Namespace) -> int:
    from carepath import dist

    print("building the collection, the wheel and the execution environment's definition", flush=True)
    built = dist.build(project.root, args.out.resolve(), args.base_image or dist.EE_BASE_IMAGE)
    print(f"carepath {built.version}\ncollection  {built.collection}\nwheel       {built.wheel}\n"
          f"execution environment  {built.execution_environment}")
    print("install both where playbooks run (a control node):\n"
          f"  ansible-galaxy collection install {built.collection.name}\n  pip install {built.wheel.name}\n"
          f"or build the execution environment for AWX / Automation Platform:\n"
          f"  cd {args.out} && ansible-builder build -f execution-environment.yml -t carepath-ee:{built.version}")
    return 0


def _lab_context(project: Project, args: argparse.Namespace) -> tuple[Topology, LabFiles]:
    topo = topology.load(args.topology or _default_topology())
    files = LabFiles(
        state=project.lab_state(topo.name),
        inventory_dir=(args.inventory or project.lab_inventory).resolve(),
    )
    return topo, files


def _cmd_lab(project: Project, args: argparse.Namespace) -> int:
    from carepath.lab import images, lab

    if args.lab_command == "images":
        images.ensure(args.release or list(images.RELEASES), rebuild=args.rebuild)
        return 0
    topo, files = _lab_context(project, args)
    if args.lab_command == "up":
        states = lab.up(topo, files, rebuild_images=args.rebuild_images)
        _print_hosts(states)
        from carepath.evidence.dsse import ensure_keypair

        kid = ensure_keypair(project.evidence_key, project.evidence_key.with_suffix(".pub"))
        if kid is not None:
            print(f"evidence signing key for lab runs: {project.evidence_key} (key id {kid}); "
                  "production sites make their own with `carepath evidence keygen`")
        return 0
    if args.lab_command == "status":
        states = lab.status(topo, files)
        _print_hosts(states)
        if all(s.state == "absent" for s in states):
            print(f"lab {topo.name!r} is not up; start it with `carepath lab up`")
            return 1
        return 0
    removed = lab.down(topo.name, files, topo.network, remove_images=args.images)
    if removed:
        print("removed:\n  " + "\n  ".join(removed))
    else:
        print(f"lab {topo.name!r} is not up; nothing to remove")
    return 0


def _print_hosts(states: Sequence[HostState]) -> None:
    rows = [("HOST", "KIND", "RELEASE", "STATE", "ADDRESS", "NAME")]
    rows += [(s.name, s.kind, s.release, s.state, s.endpoint if s.address else "-", s.container) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _cmd_run(project: Project, args: argparse.Namespace) -> int:
    from carepath import runner

    request = runner.RunRequest(
        playbook=args.playbook,
        inventory=args.inventory,
        check=args.check,
        diff=args.diff,
        limit=args.limit,
        tags=args.tags,
        skip_tags=args.skip_tags,
        extra_vars=tuple(args.extra_vars),
        verbosity=args.verbose,
        vault_password_file=args.vault_password_file,
        ticket=args.ticket,
        approval=args.approval.resolve() if args.approval else None,
    )
    result = runner.run(project, request)
    print(
        f"carepath: run {result.run_id} {result.status} (rc={result.rc}, changed={result.changed})\n"
        f"carepath: artifacts: {result.artifact_dir}",
        file=sys.stderr,
    )
    return result.rc


def _cmd_drift(project: Project, args: argparse.Namespace) -> int:
    import json

    from carepath import drift, evidence, runner

    public = args.key or project.evidence_key.with_suffix(".pub")
    keys = [evidence.load_public_key(public)] if args.key or public.exists() else None
    if args.bundle is not None:  # any run's evidence: a drift run's, an AWX check job's from the store
        bundle, out_dir, status = args.bundle, args.bundle.resolve().parent.parent / "reports" / args.bundle.name, None
    else:
        request = runner.RunRequest(
            playbook=args.playbook, inventory=args.inventory, check=True, limit=args.limit, tags=args.tags,
            extra_vars=tuple(args.extra_vars), quiet=True,
        )
        print("carepath: checking every control in check mode (nothing is changed)...", file=sys.stderr, flush=True)
        result = runner.run(project, request)
        found = sorted(project.evidence_dir.glob(f"*/bundles/{result.run_id}"))
        if not found:
            raise CarepathError(f"the run {result.run_id} ({result.status}) left no evidence bundle under "
                                f"{project.evidence_dir}", hint=f"see {result.artifact_dir}/stdout")
        bundle, out_dir, status = found[0], result.artifact_dir, result.status
    run, events = drift.read_bundle(bundle, keys)
    results = drift.collect(events)
    for failure in drift.failures(events):
        print(f"carepath: failed: {failure}", file=sys.stderr)
    report = drift.to_json(results, {"id": run.get("run_id"), "playbook": Path(str(run.get("playbook", ""))).name,
                                     "status": run.get("status", status), "check_mode": run.get("check_mode"),
                                     "bundle": str(bundle), "verified": keys is not None})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drift.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(drift.table(results, all_rows=args.all))
    checked = "verified" if keys is not None else "NOT verified (no public key)"
    print(f"carepath: drift report: {out_dir / 'drift.json'} (from the evidence {bundle}, {checked})", file=sys.stderr)
    if not results:
        print(f"carepath: error: the run ({report['run']['status']}) checked no control; see {bundle}", file=sys.stderr)
        return 2
    return 1 if report["summary"]["drifted"] or report["summary"]["failed"] or report["summary"]["unreachable"] else 0


def _cmd_evidence(project: Project, args: argparse.Namespace) -> int:
    from carepath import evidence

    if args.evidence_command == "keygen":
        private = args.key or project.evidence_key
        public = private.with_suffix(".pub")
        kid = evidence.generate_keypair(private, public)
        print(f"signing key: {private} (keep it private; mode 0600)")
        print(f"public key:  {public} (pin it where bundles are verified)")
        print(f"key id:      {kid}")
        return 0
    if args.evidence_command == "report":
        from carepath.evidence import auditor

        keys = [evidence.load_public_key(path) for path in args.key] if args.key else None
        out = args.out or args.bundle.resolve().parent.parent / "reports" / args.bundle.resolve().name
        paths = auditor.write(args.bundle, out, keys, pdf=args.pdf)
        for kind, path in paths.items():
            print(f"{kind}: {path}")
        return 0
    keys = [evidence.load_public_key(path) for path in args.key]
    approvers = [evidence.load_public_key(path) for path in args.approver_key] if args.approver_key else None
    bundles = args.bundles
    if bundles is None and args.target.is_file():  # a ledger: its bundles are beside it, as in every store
        bundles = args.target.parent / "bundles"
    if bundles is not None:
        report = evidence.verify_ledger(args.target, bundles, keys, approver_keys=approvers,
                                        witness_files=args.witness or (), site=args.site)
    else:
        report = evidence.verify_bundle(args.target, keys, approver_keys=approvers)
    print(json.dumps(report.to_dict(), indent=2) if args.json else str(report))
    return 0 if report.ok else 1


def _cmd_change(project: Project, args: argparse.Namespace) -> int:
    from carepath import change

    _check_output_file(args.out, "--out")
    approved = change.approve_file(args.key, args.ticket, args.site, args.out, hours=args.hours)
    print(f"approved {approved['ticket']} for {approved['site']} until {approved['expires']} "
          f"(approver key {approved['approver'][:16]}...): {args.out}")
    return 0


def _check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file whose folder is missing or that is a folder."""
    if path.is_dir():
        raise CarepathError(f"{option} {path} is a folder", hint="give the path of the file to write")
    if not path.parent.is_dir():
        raise CarepathError(f"cannot write {option} {path}: its folder {path.parent} does not exist",
                            hint=f"create it first (mkdir -p {path.parent}) or choose another {option}")


def _cmd_webapp(project: Project, args: argparse.Namespace) -> int:
    from carepath import webapp

    path, digest = webapp.build_sample(args.version, args.out, broken=args.broken)
    print(f"{path}\nsha256: {digest}")
    return 0


def _cmd_hl7(project: Project, args: argparse.Namespace) -> int:
    if args.hl7_command == "sample":
        from carepath import engines

        path, digest = engines.build_sample(args.version, args.out, broken=args.broken)
        print(f"{path}\nsha256: {digest}")
        return 0
    import asyncio
    import ssl

    from carepath import mllp

    if not 0 < args.port < 65536 or args.senders < 1 or (args.count is not None and args.count < 1) \
            or (args.duration is not None and args.duration <= 0) or (args.rate is not None and args.rate <= 0):
        raise CarepathError("--port must be 1-65535; --senders, --count, --duration and --rate more than 0")
    if not args.prefix.isalnum():
        raise CarepathError(f"--prefix {args.prefix!r} must be letters and digits only")
    tls = None
    if args.ca is not None:
        try:
            tls = ssl.create_default_context(cafile=str(args.ca))
        except (OSError, ssl.SSLError) as exc:
            raise CarepathError(f"cannot use the CA {args.ca}: {exc}") from None
    count = None if args.duration else (args.count or 10)
    tallies = asyncio.run(mllp.send_many(
        args.host, args.port, args.senders, count=count, rate=args.rate, duration=args.duration, prefix=args.prefix,
        ack_timeout=args.ack_timeout, tls=tls, server_name=args.server_name, patience=args.give_up_after))
    summary = mllp.summarize(tallies)
    print(mllp.format_summary(summary))
    return 0 if summary["unacked"] == 0 and summary["acked"] > 0 else 1


def _cmd_controls(project: Project, args: argparse.Namespace) -> int:
    from carepath import controls

    if args.controls_command == "list":
        print(controls.table(controls.load()), end="")
        return 0
    stale = controls.sync(project.root, write=args.controls_command == "sync")
    verb = "updated" if args.controls_command == "sync" else "out of date"
    for path in stale:
        print(f"{verb}: {path.relative_to(project.root)}")
    if args.controls_command == "check" and stale:
        print("run `carepath controls sync` and commit the result", file=sys.stderr)
        return 1
    return 0


#: What to do about a file system error, by errno: the message names the path and the reason.
_OS_ERROR_HINTS = {
    errno.ENOENT: "create the missing folder first, or choose a path whose folder exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "move the existing file aside, or choose another path",
    errno.EISDIR: "that path is a folder; give a file path instead",
    errno.EACCES: "choose a path you may write to, or fix its permissions",
    errno.EPERM: "choose a path you may write to, or fix its permissions",
    errno.EROFS: "that file system is read-only; choose a path on a writable one",
    errno.ENOSPC: "free some space, or choose a path on another file system",
}


def os_error_message(exc: OSError) -> CarepathError:
    """A file system error as a message naming the path, why it failed and what to do.

    One place for every command: a path given on the command line that cannot be written
    (missing folder, a file where a folder is needed, no permission) is the user's to fix,
    and a traceback does not tell them which path or how.
    """
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "a file"
    reason = exc.strerror or str(exc)
    return CarepathError(f"cannot use {where}: {reason}", hint=_OS_ERROR_HINTS.get(exc.errno or 0))


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``carepath ... | head``): stop quietly.

    As the Python docs advise ("Note on SIGPIPE"): point stdout at devnull so the interpreter's
    final flush does not raise again, and exit 1 as Python does on EPIPE.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def _project_for(args: argparse.Namespace) -> Project:
    """The checkout, for the commands that work on one. Verifying or reporting evidence (and drift
    from a bundle), making a key and the HL7 and web app tools also work where only the wheel is installed
    (an auditor's workstation, an execution environment): they get the working folder, whose .carepath/
    is where the collection's evidence callback looks for its key outside a checkout."""
    try:
        return Project.discover()
    except CarepathError:
        standalone = (args.command in ("hl7", "webapp")
                      or (args.command == "drift" and args.bundle is not None)
                      or args.command == "evidence")
        if not standalone:
            raise
        return Project(root=Path.cwd())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        project = _project_for(args)
        handlers = {
            "lab": _cmd_lab, "run": _cmd_run, "drift": _cmd_drift, "controls": _cmd_controls, "evidence": _cmd_evidence,
            "change": _cmd_change, "webapp": _cmd_webapp, "hl7": _cmd_hl7, "dist": _cmd_dist, "demo": _cmd_demo,
        }
        code = handlers[args.command](project, args)
        sys.stdout.flush()  # inside the try: a closed pipe is noticed here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except CarepathError as exc:
        print(f"carepath: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        error = os_error_message(exc)
        print(f"carepath: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("carepath: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
