"""Incidents, attempts and runs: a trigger opens an incident, an attempt walks its steps
(gate, run, verify, settle).
"""
