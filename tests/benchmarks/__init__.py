"""Benchmarks are not timed tests, but their --quick modes run here so the scripts don't rot.

They read a small generated stand-in (tests/standin_data.py) through ``--data``, never the
public datasets, so they run the same on a fresh clone with nothing beside it.
"""
