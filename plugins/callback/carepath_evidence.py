# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record every run as a signed, hash-chained evidence bundle (carepath.evidence.recorder)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: carepath_evidence
type: aggregate
short_description: Audit evidence for every run - hash-chained events, signed bundle, site ledger
description:
  - Writes one bundle per playbook run under O(evidence_dir)/<site>/bundles/<run id>/ - events.jsonl
    (one redacted record per task result, each chained to the previous by SHA-256), run.json (who,
    what, where, under which change ticket, source digests, per-host stats) and, when a signing key is
    configured, bundle.dsse.json (an in-toto Statement signed with ed25519), then appends the bundle's
    digest to the site's chained ledger.
  - The same whether the run comes from ansible-playbook, carepath run (ansible-runner) or AWX.
  - Deny by default - records are built field by field; module results are never copied whole. A failed
    task's message is kept after secret values (vault variables, secret-looking environment variables)
    and PHI-like patterns are masked; no_log results keep their status only; diffs are kept as a digest.
  - Verify a bundle or a ledger offline with C(carepath evidence verify).
options:
  evidence_dir:
    description:
      - Where bundles and ledgers are written.
      - Unset, C(evidence) in carepath's state folder (C($CAREPATH_STATE_DIR), else C(.carepath) in the checkout
        whose ansible.cfg is in use, else in the working folder), the folder C(carepath run) uses.
      - Set only through the environment, as C(carepath run) sets it, so every launcher and every carepath
        command finds the same folder.
    type: path
    env: [{name: CAREPATH_EVIDENCE_DIR}]
  signing_key:
    description:
      - Path of the ed25519 private key (PEM, from C(carepath evidence keygen)); never keep it in the repository.
      - Unset, C(keys/evidence.key) in carepath's state folder (C($CAREPATH_STATE_DIR), else C(.carepath) in the
        checkout whose ansible.cfg is in use, else in the working folder), the key C(carepath run), C(carepath
        lab up) and C(carepath evidence keygen) use.
      - Set only through the environment (an AWX credential injects it), as C(carepath run) sets it, so every
        launcher signs with the same key.
      - Without a key there, bundles are written but not signed or listed in the ledger, and the run says so.
    type: path
    env: [{name: CAREPATH_EVIDENCE_KEY}]
  run_id:
    description: The run id (C(carepath run) passes its own, so the bundle and runner artifacts match).
    env: [{name: CAREPATH_RUN_ID}]
  witness:
    description:
      - Where each ledger entry's digest (and each run's opening) is also recorded, off the controller,
        so that a rewrite of the ledger by someone holding the key is detected (C(carepath evidence verify
        --witness)). C(syslog) sends it to the local syslog (tag C(carepath-ledger)), which the
        log_forwarding role sends over TLS to the site's collector; C(file:PATH) appends to a file; C(none).
    default: syslog
    env: [{name: CAREPATH_EVIDENCE_WITNESS}]
    ini: [{section: carepath_evidence, key: witness}]
  store:
    description:
      - The site's evidence store, for jobs whose own folder does not last (an AWX / Automation Platform
        execution node deletes it when the job ends) or sites that keep evidence off the controller.
        Each sealed bundle is shipped there whole, then listed in the store's ledger, which stays one
        chain when jobs finish at once (it is appended under the store's lock).
      - An absolute directory (C(/srv/evidence) or C(dir:/srv/evidence), a mounted volume) or
        C(ssh://[user@]host[:port]/path) (an evidence host with sshd, tar and python3). C(none) or
        unset keeps bundles and the ledger under O(evidence_dir).
      - The policy gate refuses a run whose evidence the store cannot take (unwritable, unreachable, or no
        signing key to seal it with), before any host is touched. Each exchange with the store ends after
        C(CAREPATH_EVIDENCE_STORE_TIMEOUT) seconds (120); a retried append never lists a bundle twice.
        A bundle the store fails to take at the end stays under O(evidence_dir), and the next run from
        that machine ships it first; it is also marked in the store (C(<site>/unlisted/), signed), so the
        site's next run with the same key, from any machine, lists it if the store holds it.
    env: [{name: CAREPATH_EVIDENCE_STORE}]
    ini: [{section: carepath_evidence, key: store}]
  store_ssh_args:
    description:
      - More C(ssh) options for an C(ssh://) store, e.g.
        C(-i /runner/env/store_key -o UserKnownHostsFile=/runner/env/known_hosts).
      - Without them ssh uses its own configuration and agent (AWX's machine credential).
    env: [{name: CAREPATH_EVIDENCE_STORE_SSH_ARGS}]
    ini: [{section: carepath_evidence, key: store_ssh_args}]
  mrn_pattern:
    description:
      - A regular expression for this site's medical record numbers, masked like the built-in PHI patterns
        (SSNs, C(MRN:) labelled numbers, dates of birth, HL7 PID segments), e.g. C(\bH\d{8}\b).
    env: [{name: CAREPATH_MRN_PATTERN}]
    ini: [{section: carepath_evidence, key: mrn_pattern}]
"""

import atexit
import os
import time
from pathlib import Path

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.release import __version__ as ansible_version
from ansible_collections.carepath.core.plugins.plugin_utils import carepath_settings as settings
from ansible_collections.carepath.core.plugins.plugin_utils.carepath_wheel import require

try:
    from carepath import gate, sitepolicy
    from carepath.errors import CarepathError
    from carepath.evidence.artifacts import send_secrets
    from carepath.evidence.recorder import Recorder
    from carepath.evidence.redact import Redactor
    from carepath.evidence.store import parse as parse_store
    from carepath.runid import RUN_ID_ENV
except ImportError as _import_error:  # listing and documenting the collection works without the package
    CAREPATH_IMPORT_ERROR: ImportError | None = _import_error
else:
    CAREPATH_IMPORT_ERROR = None

# ansible-core 2.19 has no public API for a value's origin or vault tag. ansible.parsing.vault (a
# public module) imports both tags for its own use, and they are taken from there, never from
# ansible._internal; tests/unit/test_redaction_canaries.py fails if a release moves them.
try:
    from ansible.parsing.vault import EncryptedString, VaultedValue
except ImportError:  # pragma: no cover - older ansible-core
    EncryptedString = VaultedValue = None
try:
    from ansible.parsing.vault import Origin
except ImportError:  # pragma: no cover - older ansible-core: no origins, no whole-file vault values
    Origin = None


def _shown(path):
    """A local path relative to the working directory (as the operator typed it); a store's address as is."""
    return path if "://" in path else os.path.relpath(path)


def _extra_vars(playbook):
    """The run's extra variables, as its plays see them (empty if it has no play)."""
    try:
        plays = playbook.get_plays()
        return dict(plays[0].get_variable_manager().extra_vars) if plays else {}
    except Exception:  # noqa: BLE001 - the decision then sees no extra vars, and records them as such
        return {}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "carepath_evidence"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        # Without the package there is no evidence: say so (the policy gate then refuses the run too).
        require(CAREPATH_IMPORT_ERROR)
        super().__init__(*args, **kwargs)
        self._recorder = None
        self._started = {}
        self._failed = False
        self._refused = False
        self._gate = None

    # --- start ----------------------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        args = context.CLIARGS
        inventory = [str(i) for i in (args.get("inventory") or [])]
        # The site (whose ledger lists this run) is the site policy's, never a run variable's.
        try:
            site = sitepolicy.load(inventory).site
        except CarepathError:  # the gate refuses the run and says why; it is filed apart from every site
            site = sitepolicy.UNREADABLE_SITE
        store_spec, store_args = self.get_option("store"), self.get_option("store_ssh_args")
        try:
            store = parse_store(store_spec, store_args)
        except CarepathError:  # the gate refuses the run and says why; its evidence stays here
            store = None
        mrn = self.get_option("mrn_pattern")
        redactor = Redactor(extra_patterns={"site_mrn": mrn} if mrn else None)
        redactor.add_environment()
        self._recorder = Recorder(
            evidence_dir=settings.evidence_dir(),
            site=site,
            playbook=str(playbook._file_name),
            run_id=self.get_option("run_id") or "",
            signing_key=settings.evidence_key(),
            redactor=redactor,
            witness=self.get_option("witness") or "none",
            store=store,
        )
        # The gate's decision and the launch options, recorded (and signed with the opening) before any
        # play: a run refused by the hosts-line lookup, or killed at once, still carries them.
        extra_vars = _extra_vars(playbook)
        self._collect_secrets(extra_vars, names=True)  # the gate's reasons may quote an extra var's value
        self._gate = gate.decide(inventory, extra_vars=extra_vars, operator_key=str(self._recorder.signing_key),
                                 cliargs=args, roles_dir=Path(__file__).resolve().parents[2] / "roles",
                                 store=store_spec, store_ssh_args=store_args)
        self._recorder.start(check_mode=bool(args.get("check")), limit=args.get("subset"),
                             tags=list(args.get("tags") or []), inventory=inventory,
                             extra={"ansible_core": ansible_version}, decision=self._gate,
                             launch=gate.launch_record(args, extra_vars.keys()))
        # The bundle's run id for the rest of the run: lookups and tasks (the carepath_run_id lookup,
        # the deploy lock, host history) read it from the environment the workers inherit. A requested
        # id that is no run id stays as it was, so the gate's play refuses the run before any host.
        if gate.run_id_problem(os.environ) is None:
            os.environ[RUN_ID_ENV] = self._recorder.run_id
        for shipped in self._recorder.shipped:
            self._display.display(f"carepath: evidence of the earlier run {shipped} shipped to the store "
                                  "that had not taken it", stderr=True)
        for relisted in self._recorder.relisted:
            self._display.warning(f"carepath: evidence of the earlier run {relisted} was in the store but not in "
                                  "its ledger (that run's ledger append failed); it is listed now")
        for aborted in self._recorder.aborted:
            self._display.warning(f"carepath: evidence of the stopped run {aborted} was sealed as aborted "
                                  "and listed in the ledger")
        for unbound in self._recorder.unbound:
            self._display.warning(f"carepath: an unsealed bundle was NOT signed, as no run of this key opened it "
                                  f"intact: {unbound}")
        # ansible-playbook stopped before its stats (Ctrl-C, SIGTERM, an error such as the gate's lookup
        # refusing a play): seal what the run recorded, so its evidence is signed and listed at once.
        atexit.register(self._seal_if_stopped, os.getpid())

    def _seal_if_stopped(self, pid):
        recorder = self._recorder
        if recorder is None or recorder.finished or os.getpid() != pid:
            return
        refused = self._refused or (self._gate is not None and not self._gate.accepted)
        try:
            outcome = recorder.abort("refused" if refused else "canceled")
        except Exception as exc:  # noqa: BLE001 - at exit: say so, the next run seals it as aborted
            self._display.warning(f"carepath: could not seal the evidence of the stopped run: {exc}")
            return
        if outcome:
            self._display.display(f"carepath: evidence {os.path.relpath(outcome['bundle'])} sealed as "
                                  f"{'refused' if refused else 'stopped (canceled)'}", stderr=True)
        self._recorder = None

    def v2_playbook_on_play_start(self, play):
        if self._recorder is None:
            return
        try:
            manager = play.get_variable_manager()
            # AWX and Tower pass who launched the job as extra variables, not in the environment.
            for name in ("awx_user_name", "tower_user_name", "awx_job_id", "tower_job_id"):
                value = manager.extra_vars.get(name)
                if value not in (None, ""):
                    self._recorder.run.setdefault("operator", {})[name] = str(value)
            # Every secret of the play, known before its first task: extra vars named like secrets,
            # then each host's variables (vault values, connection and become passwords).
            self._collect_secrets(manager.extra_vars, names=True)
            hosts = manager._inventory.get_hosts(play.hosts)
            for host in hosts[:500]:
                self._collect_secrets(manager.get_vars(play=play, host=host, include_hostvars=False))
        except Exception as exc:  # noqa: BLE001 - evidence must not stop a run; say so instead
            self._display.warning(f"carepath evidence: could not read variables for redaction: {exc}")
        # Under `carepath run`: hand them over now, before any task result is printed, and have
        # ansible-runner's display callback scrub each event before it writes it to disk.
        from carepath.evidence.artifacts import redact_runner_partials

        redactor = self._recorder.redactor
        send_secrets(redactor.secrets, patterns=redactor.extra_patterns)
        redact_runner_partials(redactor)

    def _collect_secrets(self, variables, names=False):
        """Add the secrets among ``variables`` to the redactor.

        Inline vault values (tagged by Ansible), values read from a whole-file vault (ansible-core
        2.19 does not tag them: their origin is a file that starts with ``$ANSIBLE_VAULT``),
        connection and become passwords and, with ``names`` (extra vars), every variable whose
        name looks secret.
        """
        from carepath.evidence.redact import named_secrets

        redactor = self._recorder.redactor
        vault_files = self.__dict__.setdefault("_vault_files", {})

        def from_vault_file(value):
            path = getattr(Origin.get_tag(value), "path", None) if Origin is not None else None
            if not path:
                return False
            if path not in vault_files:
                try:
                    with open(path, "rb") as handle:
                        vault_files[path] = handle.read(14) == b"$ANSIBLE_VAULT"
                except OSError:
                    vault_files[path] = False
            return vault_files[path]

        def walk(value, depth):
            if depth > 20:
                return
            if EncryptedString is not None and isinstance(value, EncryptedString):
                redactor.add_secret(str(value))
            elif isinstance(value, str):
                if (VaultedValue is not None and VaultedValue.is_tagged_on(value)) or from_vault_file(value):
                    redactor.add_secret(str(value))
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item, depth + 1)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    walk(item, depth + 1)

        if hasattr(variables, "items"):
            redactor.add_secrets(named_secrets(variables, connection_only=not names))
        walk(variables, 0)

    # --- results --------------------------------------------------------------------------------------

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.monotonic()

    def _record(self, status, result):
        if self._recorder is None:
            return
        task, host = result._task, result._host.get_name()
        began = self._started.pop((host, task._uuid), None)
        res = result._result
        if status == "failed" and gate.GATE_TAG in task.tags:
            self._refused = True
        if status == "ok" and res.get("changed"):
            status = "changed"
        role = task._role.get_name() if getattr(task, "_role", None) else None
        self._recorder.task_result(status, host=host, task=task.get_name(), action=str(task.action),
                                   tags=task.tags, result=res, role=role,
                                   duration=time.monotonic() - began if began is not None else None)

    def v2_runner_on_ok(self, result):
        self._record("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self._failed = True
        self._record("failed", result)

    def v2_runner_on_skipped(self, result):
        self._record("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._failed = True
        self._record("unreachable", result)

    # --- end ------------------------------------------------------------------------------------------

    def v2_playbook_on_stats(self, stats):
        if self._recorder is None:
            return
        per_host = {host: stats.summarize(host) for host in sorted(stats.processed)}
        failed = self._failed or any(s["failures"] or s["unreachable"] for s in per_host.values())
        refused = self._refused or (self._gate is not None and not self._gate.accepted)
        status = "refused" if refused else "failed" if failed else "successful"
        # Under `carepath run`, which redacts ansible-runner's artifacts with these values too: sent
        # before the bundle is sealed, so that the channel is fed whatever happens to signing.
        send_secrets(self._recorder.redactor.secrets, patterns=self._recorder.redactor.extra_patterns)
        outcome = self._recorder.finish(status, per_host)
        where = os.path.relpath(outcome["bundle"])
        for warning in self._recorder.warnings:
            self._display.warning(f"carepath: {warning}")
        if outcome["signed"] and outcome["ledger"] is None and outcome.get("marked"):
            self._display.warning(f"carepath: evidence {where} is signed but NOT listed in the store's ledger yet: "
                                  "marked there for the site's next run to list (see the warning above)")
        elif outcome["signed"] and outcome["ledger"] is None:
            self._display.warning(f"carepath: evidence {where} is signed but NOT stored (see the warning above)")
        elif outcome["signed"]:
            stored = f", stored {outcome['stored']}" if outcome.get("stored") else ""
            self._display.display(f"carepath: evidence {where} (signed, ledger {_shown(outcome['ledger'])}{stored})")
        elif self._recorder.key_problem:
            self._display.warning(f"carepath: evidence {where} is NOT signed: {self._recorder.key_problem}")
        else:
            self._display.warning(
                f"carepath: evidence {where} is NOT signed: no key at {self._recorder.signing_key}; "
                "create one with `carepath evidence keygen` (or set CAREPATH_EVIDENCE_KEY)")
        self._recorder = None
