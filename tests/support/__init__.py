"""Helpers shared by the test suites: servers started from the locked environment, external tools, ports."""
