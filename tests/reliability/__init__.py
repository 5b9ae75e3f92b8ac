"""Fault injection: killed writers, concurrent readers, fork, full disks, corruption, bad input.

The ``test_*`` modules drive the helper programs here (``writer``, ``reader``,
``filler``, ``checker``) in child processes, so that a kill, a crash or a hang
lands in a child and the test reports it instead of dying with it.
"""
