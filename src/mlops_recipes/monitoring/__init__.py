"""Monitoring tools: live-like traffic for the scoring service, and service level objectives as code."""
