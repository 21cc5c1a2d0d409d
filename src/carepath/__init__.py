"""carepath: Ansible-driven delivery of HIPAA-aligned hospital infrastructure."""

__version__ = "0.1.0"
