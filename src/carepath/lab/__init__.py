"""The local lab: Debian systemd containers managed over real SSH."""
