"""A real Alertmanager (Debian's prometheus-alertmanager) for tests: one private
instance on a free loopback port, group timings of about a second, posting to the
receiver URL a test gives it (and to ``more_receivers``: an HA pair sends to every
replica). Without ``peers`` there is no cluster gossip; with them (``clustered``) it
gossips on a loopback port of its own, as an HA pair does (``--cluster.peer``)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.service import free_port

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_at(epoch: float) -> str:
    """``iso`` of a Unix time: an alert's startsAt or endsAt as the engine keeps them."""
    return iso(datetime.fromtimestamp(epoch, UTC))


class Alertmanager:
    def __init__(self, folder: Path, receiver_url: str, token: str, *,
                 repeat_interval: str = "2s",
                 group_by: tuple[str, ...] = ("alertname", "instance"),
                 more_receivers: Sequence[tuple[str, str]] = (),
                 clustered: bool = False, peers: Sequence[Alertmanager] = ()) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Gossip: on a loopback port of its own when clustered, else none at all.
        self.cluster_port = free_port() if clustered or peers else None
        self.peers = list(peers)
        folder.mkdir(parents=True, exist_ok=True)
        webhooks = "".join(f"""
      - url: {url}
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials: {secret}}}"""
                           for url, secret in [(receiver_url, token), *more_receivers])
        (folder / "alertmanager.yml").write_text(f"""
route:
  receiver: recovery
  group_by: [{", ".join(group_by)}]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: {repeat_interval}
receivers:
  - name: recovery
    webhook_configs:{webhooks}
""")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Alertmanager:
        assert BINARY, "prometheus-alertmanager is not installed (make test installs it)"
        log = open(self.folder / "alertmanager.log", "wb")  # closed with the process
        self.process = subprocess.Popen(
            [BINARY, f"--config.file={self.folder / 'alertmanager.yml'}",
             f"--storage.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", *self._cluster_args()],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"alertmanager did not start: {self.log()[-2000:]}")

    def _cluster_args(self) -> list[str]:
        if self.cluster_port is None:
            return ["--cluster.listen-address="]
        address = f"127.0.0.1:{self.cluster_port}"
        # A short peer timeout: the second of a pair waits that long for the first's
        # notification log before it sends itself (15 s by default).
        return [f"--cluster.listen-address={address}",
                f"--cluster.advertise-address={address}", "--cluster.peer-timeout=1s",
                "--cluster.gossip-interval=100ms", "--cluster.pushpull-interval=2s",
                *(f"--cluster.peer=127.0.0.1:{peer.cluster_port}" for peer in self.peers)]

    def cluster_size(self) -> int:
        """How many members this one sees in its cluster, itself included (0: none)."""
        r = httpx.get(f"{self.url}/api/v2/status", timeout=5)
        r.raise_for_status()
        return len(r.json().get("cluster", {}).get("peers") or [])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        path = self.folder / "alertmanager.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the API a Prometheus (or a test) uses ----------------------------------------
    def fire(self, labels: dict[str, str], *, annotations: dict[str, str] | None = None,
             ends_in: float = 300.0) -> None:
        now = datetime.now(UTC)
        self._post_alerts([{"labels": labels, "annotations": annotations or {},
                            "startsAt": iso(now),
                            "endsAt": iso(now + timedelta(seconds=ends_in))}])

    def resolve(self, labels: dict[str, str]) -> None:
        """As Prometheus does: the same alert, with an endsAt in the past."""
        now = datetime.now(UTC)
        self._post_alerts([{"labels": labels, "startsAt": iso(now - timedelta(minutes=1)),
                            "endsAt": iso(now - timedelta(seconds=1))}])

    def _post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        r = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5)
        r.raise_for_status()

    def silence(self, matchers: dict[str, str], minutes: float = 30) -> str:
        now = datetime.now(UTC)
        body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                             for k, v in matchers.items()],
                "startsAt": iso(now), "endsAt": iso(now + timedelta(minutes=minutes)),
                "createdBy": "tests", "comment": "test silence"}
        r = httpx.post(f"{self.url}/api/v2/silences", json=body, timeout=5)
        r.raise_for_status()
        return r.json()["silenceID"]

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v2/alerts", params=filters, timeout=5)
        r.raise_for_status()
        return r.json()
