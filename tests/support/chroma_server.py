"""A real ChromaDB server for tests and benches: ``chroma run --path DIR --port P`` as a
program of a real ``supervisord`` (tests/support/supervisor.py), so a playbook can stop and start
it with ``supervisorctl`` as on a host. Telemetry off, every wait bounded.

    server = ChromaServer(tmp / "chroma").start()   # supervisord + chroma, heartbeat answers
    server.client()                                 # chromadb.HttpClient on it
    server.populate("docs", 200, dim=8)             # our own embeddings: no model download
    server.stop()
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.service import free_port
from tests.support.supervisor import BIN, Program, Supervisor

PROGRAM = "chroma"
START = 60.0          # bound on the server answering its heartbeat, seconds
ENV = {"ANONYMIZED_TELEMETRY": "False"}


class ChromaServer:
    """supervisord in ``root/supervisor`` running chroma on ``root/data``, port ``port``."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.snapshots = root / "snapshots"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.supervisor = Supervisor(root / "supervisor", {PROGRAM: Program(
            command=[str(BIN / "chroma"), "run", "--path", str(self.data), "--host",
                     "127.0.0.1", "--port", str(self.port)],
            directory=root, environment=ENV, startsecs=1, stopwaitsecs=10)})

    def start(self) -> ChromaServer:
        self.data.mkdir(parents=True, exist_ok=True)
        self.supervisor.start()
        self.wait_healthy()
        return self

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/api/v2/heartbeat", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = START) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"chroma not answering within {timeout}s: "
                           f"{self.supervisor.ctl('status').stdout}\n"
                           f"{self.supervisor.log_tail(PROGRAM)}")

    def ctl(self, *args: str) -> str:
        return self.supervisor.ctl(*args).stdout

    def client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        return chromadb.HttpClient(host="127.0.0.1", port=self.port,
                                   settings=Settings(anonymized_telemetry=False))

    def populate(self, name: str, count: int = 200, dim: int = 8, seed: int = 7,
                 **create: Any) -> dict[str, list[float]]:
        """A fresh collection of ``count`` records (ids r0.., metadatas, documents);
        returns id -> embedding, to query with and to compare against."""
        client = self.client()
        try:
            client.delete_collection(name)
        except Exception:  # noqa: BLE001, S110 - it did not exist
            pass
        rng = random.Random(seed)
        records = {f"r{i}": [rng.random() for _ in range(dim)] for i in range(count)}
        collection = client.create_collection(name, embedding_function=None, **create)
        ids = list(records)
        for start in range(0, count, 100):
            chunk = ids[start:start + 100]
            collection.add(ids=chunk, embeddings=[records[i] for i in chunk],
                           metadatas=[{"n": int(i[1:])} for i in chunk],
                           documents=[f"document {i}" for i in chunk])
        return records

    def inventory_host(self, name: str = "chroma-1", **extra: Any) -> dict[str, Any]:
        """Host vars for an inventory that points the engine at this server."""
        return {"ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "chromadb_url": self.url, "chromadb_persist_dir": str(self.data),
                "chromadb_snapshot_dir": str(self.snapshots),
                "snapshot_roots": [str(self.root)], "chromadb_program": PROGRAM,
                "supervisor_config": str(self.supervisor.conf),
                "supervisorctl_bin": str(BIN / "supervisorctl"), **extra}

    def stop(self) -> None:
        self.supervisor.stop()
