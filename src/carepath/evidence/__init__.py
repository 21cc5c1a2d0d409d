"""Audit evidence, offline core: canonical JSON, hash-chained events, DSSE-signed run bundles, the site ledger.

The callback (the only writer of evidence) uses :class:`EventWriter`, :func:`write_run` and
:func:`seal_bundle`, then :func:`append_entry`; ``carepath evidence verify`` uses :func:`verify_bundle` and
:func:`verify_ledger`. Nothing here talks to hosts.
"""

from carepath.evidence.bundle import ENVELOPE_FILE, EVENTS_FILE, RUN_FILE, seal_bundle, write_run
from carepath.evidence.canonical import CanonicalError, canonical_bytes
from carepath.evidence.chain import GENESIS, EventWriter, walk_chain
from carepath.evidence.dsse import generate_keypair, keyid, load_private_key, load_public_key
from carepath.evidence.ledger import append_entry
from carepath.evidence.report import Finding, Report
from carepath.evidence.verify import verify_bundle, verify_bundle_files, verify_ledger

__all__ = [
    "ENVELOPE_FILE", "EVENTS_FILE", "GENESIS", "RUN_FILE", "CanonicalError", "EventWriter", "Finding", "Report",
    "append_entry", "canonical_bytes", "generate_keypair", "keyid", "load_private_key", "load_public_key",
    "seal_bundle", "verify_bundle", "verify_bundle_files", "verify_ledger", "walk_chain", "write_run",
]
