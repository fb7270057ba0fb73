"""Roles: what a credential may do. One row per role, one access per route.

Every HTTP route states the one ``Access`` it needs (``webhook.auth.requires``); every
credential has one role; a role is the set of accesses it grants. Whether a credential
may call a route is ``allows(role, access)`` and nothing else, so adding a role is
adding a row to ``ROLES``, and a new kind of route adds an ``Access`` and the
roles that grant it.

- ``webhook``: post alerts (Alertmanager), nothing else.
- ``metrics``: read ``/metrics`` (Prometheus), nothing else: it lists inventory host
  names, components and degraded modes, but can change nothing.
- ``viewer``: read everything (status, incidents, runs, approvals, degraded modes,
  switches, ``/metrics``), change nothing: a dashboard, a person looking.
- ``app``: what an embedded application needs over HTTP: trigger the runbook of the one
  component its token names (``recovery token add NAME --role app --component C``) and
  read degraded modes with their capability matrices; never approve.
- ``operator``: read everything and act: approve, reject, acknowledge, reload, run by
  hand, cancel, disable and enable, unlock.
"""

from __future__ import annotations

import enum


class Access(enum.Enum):
    """What a route does, in the words an error answer uses ("may not <value>")."""

    OPEN = "open"                         # no credentials: /healthz, /readyz
    POST_ALERTS = "post alerts"
    READ_METRICS = "read /metrics"
    READ_DEGRADED = "read degraded modes"  # and their capability matrices
    READ = "read the engine's state"      # status, incidents, runs, approvals, switches
    TRIGGER = "trigger a runbook"         # app: its own component only; operator: any
    OPERATE = "act on the engine"         # approve, reject, acknowledge, reload, run,
                                          # cancel, disable, enable, unlock


ROLES: dict[str, frozenset[Access]] = {
    "webhook": frozenset({Access.POST_ALERTS}),
    "metrics": frozenset({Access.READ_METRICS}),
    "viewer": frozenset({Access.READ_METRICS, Access.READ_DEGRADED, Access.READ}),
    "app": frozenset({Access.READ_DEGRADED, Access.TRIGGER}),
    "operator": frozenset({Access.READ_METRICS, Access.READ_DEGRADED, Access.READ,
                           Access.TRIGGER, Access.OPERATE}),
}


def allows(role: str, access: Access) -> bool:
    """Whether a credential of ``role`` may do ``access`` (an open route: anyone)."""
    return access is Access.OPEN or access in ROLES.get(role, frozenset())


def roles_for(access: Access) -> list[str]:
    """The roles that may do ``access``, in the table's order."""
    return [role for role, granted in ROLES.items() if access in granted]
