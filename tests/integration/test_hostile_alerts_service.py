"""Hostile labels and annotations posted to a real ``recovery serve`` that runs a real
playbook stay inert: Jinja, shell metacharacters, path traversal in every name-like label
(alertname, instance, job, component), 1 MB values, unicode, NUL, CR/LF. No command runs
(the marker a ``pipe`` lookup or a shell would create does not exist) and nothing is
written outside the test's folder (RECOVERY_HOME, the configured roots, HOME and TMPDIR):
the service runs in a mount namespace whose ``/`` is read-only but that folder, and no
EROFS shows anywhere it wrote. The runs record what they should: the playbook got each
value byte for byte, a hostile instance is a refused run, a hostile alertname matches
nothing. Label text through one playbook run in-process: test_security_playbooks.py."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.support.echo_runbook import install_echo_runbook
from tests.support.mount_namespace import EROFS, read_only_root, root_is_read_only
from tests.support.service import Store, wait_for, webhook_token

pytestmark = [pytest.mark.slow,              # ~40 s: 12 playbook runs (make test-full)
              pytest.mark.requires("root", "mount")]

MARKER = "PWNED"      # replaced with a path in the test's folder
MESSAGES = {          # the Echo runbook's playbook writes each back to out/<target>.txt
    "lookup": "{{ lookup('pipe', 'touch PWNED') }}",
    "lookup_file": "{{ lookup('file', '/etc/passwd') }}",
    "jinja_block": "{% for i in range(3) %}{{ i }}{% endfor %}",
    "raw_block": "{% raw %}{% endraw %}{{ 7 * 7 }}",
    "subshell": "$(touch PWNED)",
    "semicolon": "; touch PWNED",
    "backtick": "`touch PWNED`",
    "pipe": "| touch PWNED &",
    "traversal": "../../../../../../etc/passwd",
    "crlf": "line\r\nInjected: yes\r\n",
    "unicode": "ünïcødé 🔥 \u202e\u200b\ufeff 中文",
    "nul": "before\x00after",
}
# Name-like labels of every alert: carried as labels, used by nothing as a path.
NAMES = {"job": "../../../../tmp/{{ lookup('pipe', 'touch PWNED') }}",
         "component": "$(touch PWNED)/../../..", "severity": "`touch PWNED`"}
# Alerts that must run nothing: a hostile instance (refused: no such target), a hostile
# alertname (matches no runbook), and a 1 MB value (ignored at the intake).
REFUSED_INSTANCES = ["../../../../etc/passwd", "{{ lookup('pipe', 'touch PWNED') }}",
                     "echo-0; touch PWNED", "$(touch PWNED)"]
UNMATCHED_ALERTNAMES = ["../../../../etc/cron.d/x", "{{ lookup('pipe', 'touch PWNED') }}",
                        "Echo\x00", "Echo\r\nX: y"]
FINAL = ("succeeded", "failed", "refused", "skipped", "canceled", "interrupted", "deferred")


def alert(alertname: str, instance: str, message: str, marker: str, n: int) -> dict:
    labels = {"alertname": alertname, "instance": instance, "message": message,
              **{k: v.replace(MARKER, marker) for k, v in NAMES.items()}}
    return {"status": "firing", "labels": labels,
            "annotations": {"summary": f"{{{{ lookup('pipe', 'touch {marker}') }}}}",
                            "runbook_url": "file:///../../../etc/shadow"},
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": f"hostile-{n}"}


def notify(served, *alerts: dict) -> dict:
    answer = httpx.post(served.url + "/api/v1/alerts", timeout=30,
                        json={"version": "4", "status": "firing", "receiver": "recovery",
                              "groupKey": "{}:{alertname=\"Echo\"}", "alerts": list(alerts)},
                        headers={"Authorization": f"Bearer {webhook_token(served.home)}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def erofs_in(folder) -> list[str]:
    """Files under ``folder`` that mention a read-only file system."""
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                text = open(path, "rb").read().decode("utf-8", "replace")
            except OSError:
                continue
            if any(word in text for word in EROFS):
                found.append(path)
    return found


def test_hostile_labels_to_a_real_service_are_inert_and_write_nothing_outside_its_folders(
        engine_env, serve, tmp_path, monkeypatch):
    out = install_echo_runbook(engine_env)
    hosts = "\n".join(f"    echo-{i}: {{ansible_connection: local, ansible_python_interpreter: "
                      f"\"{{{{ ansible_playbook_python }}}}\"}}" for i in range(len(MESSAGES)))
    (engine_env.root / "inventory" / "hosts.yml").write_text(f"all:\n  hosts:\n{hosts}\n")
    for name in ("user-home", "tmp"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))   # Ansible's ~/.ansible
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    # the managed host's temp: on a local connection, ~/.ansible/tmp of the service's
    # user as the controller resolves it (/root, whatever HOME says)
    monkeypatch.setenv("ANSIBLE_REMOTE_TEMP", str(tmp_path / "tmp"))
    marker = tmp_path / "pwned-marker"
    served = serve()
    served.prefix = read_only_root(tmp_path)
    served.start()
    served.wait_ready(60)
    assert root_is_read_only(served.proc.pid)     # the check below is not vacuous
    assert all(root_is_read_only(p.pid) for p in served.children())

    messages = {f"echo-{i}": value.replace(MARKER, str(marker))
                for i, value in enumerate(MESSAGES.values())}
    answered = notify(served, *(alert("Echo", target, message, str(marker), n)
                                for n, (target, message) in enumerate(messages.items())))
    assert answered["accepted"] == len(messages)
    n = len(messages)
    refused = notify(served, *(alert("Echo", instance, "x", str(marker), n + i)
                               for i, instance in enumerate(REFUSED_INSTANCES)))
    unmatched = notify(served, *(alert(name, "echo-0", "x", str(marker), 100 + i)
                                 for i, name in enumerate(UNMATCHED_ALERTNAMES)))
    huge = notify(served, alert("Echo", "echo-1", "x" * 1_000_000, str(marker), 200),
                  {**alert("Echo", "echo-2", "x", str(marker), 201),
                   "annotations": {"description": "y" * 1_000_000}})
    assert huge == {"accepted": 0, "duplicates": 0, "ignored": 2}

    store = Store(served.home)
    try:
        def settled():
            runs = store.rows("SELECT target, status FROM runs")
            done = {r["target"] for r in runs if r["status"] in FINAL}
            return store.busy() == (0, 0, 0) and set(messages) <= done
        assert wait_for(settled, 240, every=0.5), (store.busy(), [tuple(r) for r in store.rows(
            "SELECT target, status, reason FROM runs")], served.stderr()[-3000:])
        runs = store.rows("SELECT target, status, reason, count, fingerprints FROM runs "
                          "WHERE status != 'deferred'")
    finally:
        store.close()

    assert not marker.exists()                        # no command ran
    assert erofs_in(tmp_path) == []                    # nothing tried to write outside
    assert refused["accepted"] == len(REFUSED_INSTANCES) and unmatched["accepted"] == 4
    # one refused run holds the alerts of the hostile instances (unknown target)
    [refusal] = [r for r in runs if r["status"] == "refused"]
    assert refusal["count"] == len(REFUSED_INSTANCES), tuple(refusal)
    assert "unknown target" in refusal["reason"]
    assert {r["target"] for r in runs} == {*messages, refusal["target"]}   # nothing else ran
    by_target = {r["target"]: r["status"] for r in runs if r["target"] in messages}
    for target, message in messages.items():
        if "\x00" in message:       # a playbook may refuse a NUL: its run fails, inert
            continue
        assert by_target[target] == "succeeded", (target, runs)
        assert (out / f"{target}.txt").read_bytes() == message.encode(), target
    assert "root:" not in (out / "echo-1.txt").read_text()
    assert sorted(os.listdir(out)) == sorted(f"{t}.txt" for t in by_target
                                             if by_target[t] == "succeeded")
    assert served.terminate() == 0
    assert erofs_in(tmp_path) == []                    # the stop wrote nothing outside either
