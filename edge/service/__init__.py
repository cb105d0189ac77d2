"""The long-running commands: the daemon (wiring), its statistics, systemd integration, the tester."""
