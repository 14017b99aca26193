"""The fault-injection suite (issue 12): writers killed at each step, full disks, read-only
targets, closed pipes, bad numeric options, concurrent readers. ``_harness.py`` runs the
scenarios in forked children; docs/guarantees.md states what these tests hold the code to."""
