"""The frameworks the control catalog cites, grouped the way an auditor reads them.

A control cites HIPAA Security Rule paragraphs down to the implementation specification
(``164.312(a)(2)(iv)``); an auditor asks where the site stands per *standard* (164.312(a)(1),
Access control); Subpart C's standards are in 164.308 to 164.316. :func:`hipaa_standard` maps a
citation to its standard, :func:`cis_section` a CIS Debian Linux 12 Benchmark recommendation to
its section.
"""

from __future__ import annotations

import re

#: The standards of the Security Rule's administrative (164.308), physical (164.310) and technical
#: (164.312) safeguards, keyed by (section, paragraph letter, numbered paragraph of 164.308 / 164.310(a..d)).
HIPAA_STANDARDS: dict[tuple[str, str, str], tuple[str, str]] = {
    ("164.308", "a", "1"): ("164.308(a)(1)", "Security management process"),
    ("164.308", "a", "2"): ("164.308(a)(2)", "Assigned security responsibility"),
    ("164.308", "a", "3"): ("164.308(a)(3)", "Workforce security"),
    ("164.308", "a", "4"): ("164.308(a)(4)", "Information access management"),
    ("164.308", "a", "5"): ("164.308(a)(5)", "Security awareness and training"),
    ("164.308", "a", "6"): ("164.308(a)(6)", "Security incident procedures"),
    ("164.308", "a", "7"): ("164.308(a)(7)", "Contingency plan"),
    ("164.308", "a", "8"): ("164.308(a)(8)", "Evaluation"),
    ("164.308", "b", ""): ("164.308(b)(1)", "Business associate contracts"),
    ("164.310", "a", ""): ("164.310(a)(1)", "Facility access controls"),
    ("164.310", "b", ""): ("164.310(b)", "Workstation use"),
    ("164.310", "c", ""): ("164.310(c)", "Workstation security"),
    ("164.310", "d", ""): ("164.310(d)(1)", "Device and media controls"),
    ("164.312", "a", ""): ("164.312(a)(1)", "Access control"),
    ("164.312", "b", ""): ("164.312(b)", "Audit controls"),
    ("164.312", "c", ""): ("164.312(c)(1)", "Integrity"),
    ("164.312", "d", ""): ("164.312(d)", "Person or entity authentication"),
    ("164.312", "e", ""): ("164.312(e)(1)", "Transmission security"),
    ("164.314", "a", ""): ("164.314(a)(1)", "Business associate contracts or other arrangements"),
    ("164.314", "b", ""): ("164.314(b)(1)", "Requirements for group health plans"),
    ("164.316", "a", ""): ("164.316(a)", "Policies and procedures"),
    ("164.316", "b", ""): ("164.316(b)(1)", "Documentation"),
}
SAFEGUARD_KINDS = {"164.308": "Administrative", "164.310": "Physical", "164.312": "Technical",
                   "164.314": "Organizational", "164.316": "Policies and documentation"}
_CITATION = re.compile(r"^(164\.3(?:08|10|12|14|16))\(([a-z])\)(?:\((\d+)\))?")

#: The top-level sections of the CIS Debian Linux 12 Benchmark.
CIS_SECTIONS = {
    "1": "Initial Setup", "2": "Services", "3": "Network", "4": "Host Based Firewall",
    "5": "Access Control", "6": "Logging and Auditing", "7": "System Maintenance",
}


def hipaa_standard(citation: str) -> tuple[str, str]:
    """The standard a HIPAA citation falls under, as (citation of the standard, its name).

    >>> hipaa_standard("164.312(a)(2)(iv)")
    ('164.312(a)(1)', 'Access control')
    >>> hipaa_standard("164.308(a)(5)(ii)(C)")
    ('164.308(a)(5)', 'Security awareness and training')
    """
    match = _CITATION.match(citation.strip())
    if not match:
        return citation, "not a Security Rule standard"
    section, letter, number = match.groups()
    key = (section, letter, (number or "") if (section, letter) == ("164.308", "a") else "")
    return HIPAA_STANDARDS.get(key, (citation, "not a Security Rule standard"))


def safeguard_kind(standard: str) -> str:
    """Administrative, Physical or Technical, for a standard's citation."""
    return SAFEGUARD_KINDS.get(standard[:7], "")


def cis_section(recommendation: str) -> tuple[str, str]:
    """The section (two levels) of a CIS recommendation and the name of its chapter.

    >>> cis_section("6.2.2.4")
    ('6.2', 'Logging and Auditing')
    """
    parts = recommendation.strip().split(".")
    return ".".join(parts[:2]), CIS_SECTIONS.get(parts[0], "")
