"""Subprocess workers: each contender runs in a process of its own and prints one JSON line."""
