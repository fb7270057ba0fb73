"""A runbook whose one step is a real playbook that counts its executions on each host
(``count_per_host.yml``: a line naming the run per execution in ``count/<host>``, then
its work, ``done/<host>``, which the verify checks), on an inventory of local hosts: a
crash test sees whether a host's step ran again, and which run ran it.

    step = counted_step(engine_env, tmp_path, "storm", 'alertname=~"Storm.*"', HOSTS)
    ...
    step.executions()      # {host: [run id of each execution, in order]}
    step.all_done()        # every host's work is done
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.engine_env import EngineEnv, local_inventory
from tests.support.paths import TEST_PLAYBOOKS

PLAYBOOK = TEST_PLAYBOOKS / "count_per_host.yml"


@dataclass
class CountedStep:
    count_dir: Path
    done_dir: Path
    hosts: list[str]

    def executions(self) -> dict[str, list[str]]:
        """Per host, the run id of each execution of the playbook, in order."""
        return {host: [line.split()[-1] for line in path.read_text().splitlines()]
                if (path := self.count_dir / host).exists() else [] for host in self.hosts}

    def counts(self) -> dict[str, int]:
        return {host: len(ids) for host, ids in self.executions().items()}

    def all_done(self) -> bool:
        return all((self.done_dir / host).exists() for host in self.hosts)


def counted_step(env: EngineEnv, tmp_path: Path, name: str, matcher: str, hosts: list[str],
                 *, deadline: str = "30s", extra: str = "") -> CountedStep:
    """The runbook ``name`` (``extra``: more of its YAML, at its top level) for alerts
    that ``matcher`` selects, targeting their ``instance``, on ``hosts``."""
    step = CountedStep(tmp_path / "count", tmp_path / "done", hosts)
    step.count_dir.mkdir()
    step.done_dir.mkdir()
    (env.root / "inventory" / "hosts.yml").write_text(local_inventory(hosts))
    shutil.copy(PLAYBOOK, env.root / "playbooks" / PLAYBOOK.name)
    env.runbook(name, f"""
match:
  - {matcher}
target: "{{{{ labels.instance }}}}"
strategies:
  - name: fix
    playbook: {PLAYBOOK.name}
    extravars: {{count_dir: "{step.count_dir}", done_dir: "{step.done_dir}"}}
verify: {{action: test.file_exists, with: {{dir: "{step.done_dir}"}},
          interval: 0.2s, deadline: {deadline}}}
{extra}""")
    return step
