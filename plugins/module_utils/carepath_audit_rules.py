# Copyright: carepath contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check Linux audit rules (the syntax of auditctl(8) rule files) without the kernel.

``auditctl`` has no dry run, and where there is no audit netlink socket (an unprivileged
container, a host booted with ``audit=0``) it cannot be asked at all. These pure functions
check every rule line the way auditctl reads it: options and their arguments, lists and
actions, fields, operators and values, permission letters, and - through a lookup the caller
supplies, e.g. ``ausyscall <arch> --dump`` on the host - syscall names. They are somewhat
stricter than auditctl where its leniency hides mistakes: a syscall rule must name its
architecture (``-F arch=b64``) before ``-S``, and comments must be on their own line.

Runs on managed hosts (imported by carepath's modules): standard library only.
"""

from __future__ import annotations

import errno
import re

# Filter lists and actions of -a/-A/-d (lib/flagtab.h; io_uring since audit 3.0.7).
LISTS = frozenset({"task", "exit", "user", "exclude", "filesystem", "io_uring"})
ACTIONS = frozenset({"always", "never"})

# Field names of -F (lib/fieldtab.h of audit 3.0 and 4.0), by the kind of value they take.
UID_FIELDS = frozenset({"uid", "euid", "suid", "fsuid", "auid", "loginuid", "obj_uid"})
GID_FIELDS = frozenset({"gid", "egid", "sgid", "fsgid", "obj_gid"})
PATH_FIELDS = frozenset({"path", "dir", "exe"})
LABEL_FIELDS = frozenset({"subj_user", "subj_role", "subj_type", "subj_sen", "subj_clr",
                          "obj_user", "obj_role", "obj_type", "obj_lev_low", "obj_lev_high"})
NUMBER_FIELDS = frozenset({"pid", "ppid", "pers", "devmajor", "devminor", "inode", "success", "saddr_fam",
                           "sessionid", "a0", "a1", "a2", "a3"})
FIELDS = (UID_FIELDS | GID_FIELDS | PATH_FIELDS | LABEL_FIELDS | NUMBER_FIELDS
          | {"arch", "perm", "exit", "filetype", "msgtype", "key", "fstype"})
# Fields the kernel only evaluates at syscall exit.
EXIT_ONLY = frozenset({"path", "dir", "perm", "exit", "filetype", "success", "devmajor", "devminor", "inode", "ppid",
                       "obj_user", "obj_role", "obj_type", "obj_lev_low", "obj_lev_high"})
# Fields the exclude list accepts (kernels with the extended exclude filter).
EXCLUDE_FIELDS = frozenset({"pid", "uid", "gid", "auid", "loginuid", "msgtype", "subj_user", "subj_role",
                            "subj_type", "subj_sen", "subj_clr"})
FILETYPES = frozenset({"file", "dir", "socket", "link", "character", "block", "fifo"})
ARCHES = frozenset({"b32", "b64", "i386", "i486", "i586", "i686", "x86_64", "ia64", "ppc", "ppc64", "ppc64le",
                    "s390", "s390x", "armeb", "armv5tejl", "armv5tel", "armv6l", "armv7l", "aarch64",
                    "riscv32", "riscv64", "loongarch64"})
# Two-character operators first, as libaudit looks for them.
OPERATORS = ("!=", ">=", "<=", "&=", "=", ">", "<", "&")
MAX_KEY_LEN = 256

# Options that take an argument, and those that do not (auditctl's getopt string).
_WITH_ARG = frozenset("aAdSFCwWkpqefbrRm")
_NO_ARG = frozenset("cilsDvth")
_LONG_WITH_ARG = frozenset({"backlog_wait_time", "signal"})
_LONG_NO_ARG = frozenset({"loginuid-immutable", "reset-lost", "reset_backlog_wait_time_actual"})
_COMMANDS = {"l": "lists the rules", "s": "reports the status", "v": "prints the version", "h": "prints help",
             "m": "sends a message", "t": "trims watches", "R": "reads another rules file (nesting is not supported)",
             "signal": "signals auditd"}
_NUMBER = re.compile(r"^-?(0[xX][0-9a-fA-F]+|[0-9]+)$")


def tokenize(line: str) -> list[str]:
    """Split one rule line into words as auditctl does (a backslash keeps a space in a word)."""
    words = re.split(r"(?<!\\)\s+", line.strip())
    return [w.replace("\\ ", " ") for w in words if w]


def active_rules(text: str) -> list[tuple[int, str]]:
    """The rule lines of a rules file, numbered from 1, blanks and comments left out, spaces normalised."""
    rules = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = tokenize(line)
        if words and not words[0].startswith("#"):
            rules.append((number, " ".join(words)))
    return rules


def _options(words: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(option, argument) pairs in order, and problems with how the words are laid out."""
    pairs: list[tuple[str, str | None]] = []
    problems: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("#"):
            problems.append("a comment must be on its own line (auditctl would read it as arguments)")
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name in _LONG_WITH_ARG:
                if not eq:
                    if index >= len(words):
                        problems.append(f"--{name} needs a value")
                        break
                    value = words[index]
                    index += 1
                pairs.append((name, value))
            elif name in _LONG_NO_ARG and not eq:
                pairs.append((name, None))
            else:
                problems.append(f"unknown option {word}")
            continue
        if len(word) < 2 or word[0] != "-" or word[1] not in _WITH_ARG | _NO_ARG:
            problems.append(f"{word!r} is not an auditctl option" if word.startswith("-")
                            else f"{word!r} is given without an option before it")
            continue
        letter = word[1]
        if letter in _NO_ARG:
            if len(word) > 2:
                problems.append(f"unknown option {word}")
            pairs.append((letter, None))
            continue
        if len(word) > 2:
            pairs.append((letter, word[2:]))
        elif index < len(words):
            pairs.append((letter, words[index]))
            index += 1
        else:
            problems.append(f"-{letter} needs a value")
    return pairs, problems


def _split_field(pair: str) -> tuple[str, str, str] | None:
    for op in OPERATORS:
        at = pair.find(op)
        if at >= 0:
            return pair[:at], op, pair[at + len(op):]
    return None


def _is_number(value: str) -> bool:
    return bool(_NUMBER.match(value))


class _Rule:
    """What one line has said so far: the state auditctl keeps while reading its options."""

    def __init__(self, syscall_known, user_known, group_known):
        self.syscall_known = syscall_known
        self.user_known = user_known
        self.group_known = group_known
        self.list: str | None = None
        self.watch = False
        self.arch: str | None = None
        self.syscalls = False
        self.watched = False  # a path or dir field, or -p
        self.exe = False
        self.key_len = 0
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def list_action(self, option: str, value: str) -> None:
        if self.list is not None or self.watch:
            self.fail("one rule per line: only one of -a, -A, -d, -w, -W may be given")
            return
        parts = value.split(",")
        if len(parts) != 2:
            self.fail(f"-{option} {value}: expected LIST,ACTION such as always,exit")
            return
        if "possible" in parts:
            self.fail(f"-{option} {value}: the 'possible' action is deprecated; use always or never")
            return
        first, second = parts
        lst, action = (second, first) if first in ACTIONS else (first, second)
        if lst not in LISTS or action not in ACTIONS:
            self.fail(f"-{option} {value}: unknown list or action; lists are {', '.join(sorted(LISTS))}, "
                      f"actions are always, never")
            return
        if lst == "task" and self.syscalls:
            self.fail("syscalls cannot be audited on the task list")
        self.list = lst

    def watch_path(self, option: str, path: str) -> None:
        if self.list is not None or self.watch:
            self.fail("one rule per line: only one of -a, -A, -d, -w, -W may be given")
            return
        self.watch = True
        self.list = "exit"
        self.syscalls = True
        self._path(f"-{option}", path)

    def _path(self, what: str, path: str) -> None:
        if not path.startswith("/"):
            self.fail(f"{what} {path}: the path must be absolute")
        elif ".." in path.split("/"):
            self.fail(f"{what} {path}: relative path notation (..) is not supported")
        elif "*" in path or "?" in path:
            self.fail(f"{what} {path}: wildcards are not supported")

    def perms(self, value: str) -> None:
        if self.list is None:
            self.fail("-p needs a watch (-w) or a rule (-a) before it")
        elif not re.fullmatch(r"[rwxaRWXA]{1,4}", value):
            self.fail(f"-p {value}: permissions are one to four of the letters r, w, x, a")
        else:
            self.watched = True

    def key(self, value: str, *, via_field: bool = False) -> None:
        if not via_field and (self.list is None or not (self.syscalls or self.watched or self.exe)):
            self.fail("-k needs a watch (-w), a syscall (-S) or a path field before it")
            return
        if not value:
            self.fail("the key is empty")
            return
        if "\x01" in value:
            self.fail(f"key {value!r} has an illegal character")
        self.key_len += len(value) + (1 if self.key_len else 0)
        if self.key_len > MAX_KEY_LEN:
            self.fail(f"the keys of this rule are longer than {MAX_KEY_LEN} characters")

    def syscall(self, value: str) -> None:
        if self.list is None:
            self.fail("-S needs a rule list (-a always,exit) before it")
            return
        if self.list == "io_uring":
            self.syscalls = True
            return
        if self.list != "exit":
            self.fail(f"syscalls can only be audited on the exit list, not on {self.list}")
            return
        names = value.split(",")
        if any(not n for n in names):
            self.fail(f"-S {value}: empty syscall name")
            return
        if self.arch is None and names != ["all"]:
            self.fail(f"-S {value}: give the architecture first (-F arch=b64, and a twin rule with arch=b32)")
        for name in names:
            if name == "all" or _is_number(name) or self.arch is None:
                continue
            known = self.syscall_known(self.arch, name) if self.syscall_known else None
            if known is False:
                self.fail(f"unknown syscall {name!r} for arch {self.arch} (ausyscall {self.arch} {name} does not know it)")
        self.syscalls = True

    def compare(self, value: str) -> None:
        if self.list is None:
            self.fail("-C needs a rule list (-a always,exit) before it")
            return
        split = _split_field(value)
        if split is None or split[1] not in ("=", "!=") or not split[0] or not split[2]:
            self.fail(f"-C {value}: expected FIELD=FIELD or FIELD!=FIELD")
            return
        left, unused, right = split
        if {left, right} <= UID_FIELDS or {left, right} <= GID_FIELDS:
            return
        self.fail(f"-C {value}: only user ids (uid, euid, suid, fsuid, auid, obj_uid) or group ids "
                  "(gid, egid, sgid, fsgid, obj_gid) can be compared with each other")

    def field(self, pair: str) -> None:
        if self.list is None:
            self.fail(f"-F {pair}: a rule list (-a always,exit) must be given before fields")
            return
        split = _split_field(pair)
        if split is None:
            self.fail(f"-F {pair}: missing operator (one of {' '.join(OPERATORS)})")
            return
        name, op, value = split
        if not name or not value:
            self.fail(f"-F {pair}: expected FIELD{op}VALUE")
            return
        if name == "key":
            self.key(value, via_field=True)
            return
        if name not in FIELDS:
            self.fail(f"-F {pair}: unknown field {name!r}")
            return
        if self.list == "exclude" and name not in EXCLUDE_FIELDS:
            self.fail(f"-F {pair}: field {name} cannot be used on the exclude list")
            return
        if name in EXIT_ONLY and self.list != "exit":
            self.fail(f"-F {pair}: field {name} is only valid on the exit list")
            return
        check = getattr(self, f"_field_{name}", None)
        if check is not None:
            check(pair, op, value)
        elif name in UID_FIELDS:
            self._ids(pair, value, self.user_known, "user", allow_unset=True)
        elif name in GID_FIELDS:
            self._ids(pair, value, self.group_known, "group", allow_unset=False)
        elif name in PATH_FIELDS:
            self._equality(pair, op)
            self._path(f"-F {pair}:", value)
            if name == "exe":
                self.exe = True
            else:
                self.watched = True
        elif name in NUMBER_FIELDS:
            if not (_is_number(value) or (name == "sessionid" and value == "unset")):
                self.fail(f"-F {pair}: {name} takes a number")
        elif name in LABEL_FIELDS:
            self._equality(pair, op)

    def _equality(self, pair: str, op: str) -> None:
        if op not in ("=", "!="):
            self.fail(f"-F {pair}: this field only takes = or !=")

    def _ids(self, pair, value, known, kind, *, allow_unset):
        if _is_number(value) or (allow_unset and value == "unset"):
            return
        if known is not None and not known(value):
            self.fail(f"-F {pair}: unknown {kind} {value!r} on this host")

    def _field_arch(self, pair, op, value):
        self._equality(pair, op)
        if self.syscalls:
            self.fail(f"-F {pair}: the architecture must be given before -S")
        if value not in ARCHES and not _is_number(value):
            self.fail(f"-F {pair}: unknown architecture {value!r} (use b64 or b32)")
            return
        self.arch = value

    def _field_perm(self, pair, op, value):
        if op != "=":
            self.fail(f"-F {pair}: perm only takes =")
        if not re.fullmatch(r"[rwxaRWXA]{1,4}", value):
            self.fail(f"-F {pair}: permissions are one to four of the letters r, w, x, a")
        self.watched = True

    def _field_exit(self, pair, op, value):
        if _is_number(value):
            return
        name = value.lstrip("-")
        if not (name.startswith("E") and hasattr(errno, name)):
            self.fail(f"-F {pair}: exit takes a number or an errno name such as -EACCES")

    def _field_filetype(self, pair, op, value):
        if value not in FILETYPES:
            self.fail(f"-F {pair}: filetype is one of {', '.join(sorted(FILETYPES))}")

    def _field_msgtype(self, pair, op, value):
        if self.list not in ("exclude", "user"):
            self.fail(f"-F {pair}: msgtype is only valid on the exclude and user lists")
        elif not (_is_number(value) or re.fullmatch(r"[A-Z][A-Z0-9_]*", value)):
            self.fail(f"-F {pair}: msgtype takes a number or a record type name such as CWD")

    def _field_fstype(self, pair, op, value):
        if self.list != "filesystem":
            self.fail(f"-F {pair}: fstype is only valid on the filesystem list")


def _control(option: str, value: str | None) -> str | None:
    """Problems with a setting of the audit system itself (not a rule)."""
    if option in ("e", "f") and value not in ("0", "1", "2"):
        return f"-{option} {value}: must be 0, 1 or 2"
    if option in ("b", "r", "backlog_wait_time") and not (value or "").isdigit():
        return f"{'-' if len(option) == 1 else '--'}{option} {value}: must be a number"
    if option == "q" and not re.fullmatch(r"/[^,]*,/[^,]+", value or ""):
        return f"-q {value}: expected MOUNT,SUBTREE"
    return None


def check_line(line: str, syscall_known=None, user_known=None, group_known=None) -> list[str]:
    """Problems with one rule line (empty when auditctl would accept it).

    ``syscall_known(arch, name)`` returns True or False, or None when it cannot tell;
    ``user_known(name)`` and ``group_known(name)`` say whether a name exists on the host.
    """
    pairs, problems = _options(tokenize(line))
    rule = _Rule(syscall_known, user_known, group_known)
    deleting_all = any(option == "D" for option, unused in pairs)  # -D -k KEY deletes the rules with that key
    for option, value in pairs:
        if option in _COMMANDS:
            problems.append(f"-{option if len(option) == 1 else '-' + option} {_COMMANDS[option]}: "
                            "it is a command, not a rule; remove it from the rules file")
        elif option in ("a", "A", "d"):
            rule.list_action(option, value)
        elif option in ("w", "W"):
            rule.watch_path(option, value)
        elif option == "p":
            rule.perms(value)
        elif option == "k":
            rule.key(value, via_field=deleting_all)
        elif option == "S":
            rule.syscall(value)
        elif option == "F":
            rule.field(value)
        elif option == "C":
            rule.compare(value)
        elif option == "D" or option in ("c", "i") or option in _LONG_NO_ARG:
            continue
        else:
            problem = _control(option, value)
            if problem:
                problems.append(problem)
    return problems + rule.problems


def check_text(text: str, syscall_known=None, user_known=None, group_known=None) -> list[str]:
    """Problems with every rule of a rules file, each as ``line N: <problem>``."""
    found = []
    for number, line in active_rules(text):
        found += [f"line {number}: {p}  [{line}]" for p in check_line(line, syscall_known, user_known, group_known)]
    return found


def syscall_arches(text: str) -> set[str]:
    """The architectures (-F arch=...) that the rules of a file name."""
    return {m.group(1) for m in re.finditer(r"-F\s+arch=(\S+)", text)}


def parse_syscall_table(dump: str) -> set[str]:
    """Syscall names from ``ausyscall <arch> --dump`` (a header line, then ``number<TAB>name``)."""
    names = set()
    for line in dump.splitlines():
        words = line.split()
        if len(words) == 2 and words[0].isdigit():
            names.add(words[1])
    return names


def executed_paths(rules: list[str]) -> set[str]:
    """Paths that have an execution rule (``-F path=P -F perm=x`` with x among the permissions)."""
    found = set()
    for rule in rules:
        words = tokenize(rule)
        paths = [w[len("path="):] for w in words if w.startswith("path=")]
        perms = [w[len("perm="):] for w in words if w.startswith("perm=")]
        if paths and any("x" in p.lower() for p in perms):
            found.update(paths)
    return found


def natural_key(name: str) -> list:
    """Sort key of ``ls -v``, the order augenrules reads rules files in."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
