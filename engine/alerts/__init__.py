"""Alerts from Alertmanager: parsed at the door, journaled, drained by the workers, routed
to a runbook.
"""
