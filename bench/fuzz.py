"""Fuzzing the HTTP API at volume: at least 100,000 generated requests against the app
(Flask's test client, in this process) on a real SQLite store under a temporary
RECOVERY_HOME, counted by status; every 5xx is printed with the request that caused it
(the target: none, the store being up; exit 1 otherwise).

Hypothesis draws a corpus first (tests/support/fuzz_inputs.py, the strategies of
tests/unit/test_fuzz.py: Alertmanager-shaped, mutated and malformed notifications, and
calls of every route with any credential, id, query and body). Drawing costs ~10 ms a
request on this machine, so the bulk is made from the corpus the way a mutation fuzzer
does: each request takes a corpus entry and, for its body, either swaps one value of the
decoded JSON for a hostile one or another entry's part, or flips, cuts, repeats or splices
its bytes. Seeded: the same ``--seed`` sends the same requests.

    .venv/bin/python bench/fuzz.py [--quick] [-n 100000] [--corpus 3000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: tests/support draws the requests
    sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.support import fuzz_inputs as inputs  # noqa: E402
from tests.support.engine_env import EngineEnv  # noqa: E402
from tests.support.fuzz_inputs import Request  # noqa: E402


def draw_corpus(size: int, seed: int) -> list[Request]:
    """``size`` requests drawn by hypothesis, three in four of them alert posts."""
    corpus: list[Request] = []

    posts = inputs.alert_posts()

    @settings(max_examples=size, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(request=st.one_of(posts, posts, posts, inputs.route_calls()))
    def collect(request: Request) -> None:
        corpus.append(request)

    random.seed(seed)                  # hypothesis seeds from the global random
    collect()
    return corpus


def swap_a_value(value: Any, rng: random.Random, donor: Any) -> Any:
    """``value`` with one value somewhere inside it replaced (a hostile string, a part of
    ``donor``, a wrong type) or, in a mapping, one key removed."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        if rng.random() < 0.15:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: swap_a_value(value[key], rng, donor)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = rng.randrange(len(value))
        return value[:i] + [swap_a_value(value[i], rng, donor)] + value[i + 1:]
    return rng.choice([rng.choice(inputs.HOSTILE), donor, None, True, -1, 2**64, 1.5, [], {},
                       rng.choice(inputs.HOSTILE) * rng.randint(1, 200)])


def mutate_bytes(body: bytes, rng: random.Random, donor: bytes) -> bytes:
    data = bytearray(body or b"{}")
    how = rng.randrange(5)
    if how == 0:                       # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 1:                     # cut short
        data = data[:rng.randrange(len(data))]
    elif how == 2:                     # repeat a slice
        i = rng.randrange(len(data))
        data[i:i] = data[i:i + rng.randint(1, 64)] * rng.randint(2, 50)
    elif how == 3:                     # splice another body in
        i = rng.randrange(len(data))
        data[i:] = donor[rng.randrange(len(donor) or 1):]
    else:                              # insert a hostile string, escaped or raw
        i = rng.randrange(len(data))
        data[i:i] = rng.choice(inputs.HOSTILE).encode("utf-8", "surrogatepass")
    return bytes(data)


def mutated(request: Request, rng: random.Random, donor: Request) -> Request:
    """A variant of ``request``: its body changed as JSON or as bytes, sometimes its
    headers or query swapped for the donor's."""
    body = request.body
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        decoded = None
    if decoded is not None and rng.random() < 0.6:
        try:
            part = json.loads(donor.body)
        except (ValueError, RecursionError):
            part = donor.body.decode("utf-8", "replace")
        body = inputs.encode(swap_a_value(decoded, rng, part))
    else:
        body = mutate_bytes(body, rng, donor.body)
    headers = donor.headers if rng.random() < 0.1 else request.headers
    query = donor.query if rng.random() < 0.1 else request.query
    return replace(request, body=body, headers=dict(headers), query=dict(query))


def run(n: int, corpus_size: int, seed: int) -> int:
    from engine.config import load_config
    from tests.support.webhook_app import Service

    logging.disable(logging.WARNING)   # the refusals' own lines; an internal error shows
    t0 = time.monotonic()
    corpus = draw_corpus(corpus_size, seed)
    drawn = time.monotonic() - t0
    rng = random.Random(seed)
    statuses: Counter[int] = Counter()
    by_route: Counter[tuple[str, str, int]] = Counter()
    faults: list[tuple[Request, int, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        env = EngineEnv(Path(tmp))
        env.runbook("redis", """
            match: ['alertname="RedisDown"']
            target: "{{ labels.instance }}"
            strategies: [{name: fix, action: test.ok}]
        """)
        service = Service(load_config(env.config_path))
        t1 = time.monotonic()
        for i in range(n):
            request = corpus[i] if i < len(corpus) else mutated(
                rng.choice(corpus), rng, rng.choice(corpus))
            answer = inputs.send(service.client, request)
            statuses[answer.status_code] += 1
            route = request.path if request.path.startswith("/api/v1/alerts") else "other"
            by_route[(request.method, route, answer.status_code // 100)] += 1
            if not inputs.acceptable(request, answer.status_code):
                faults.append((request, answer.status_code, answer.get_data(as_text=True)))
        sent = time.monotonic() - t1
        journaled = service.store.intake_depth(time.time())[0]
        service.store.close()
    print(f"fuzz: {n:,} requests ({len(corpus):,} drawn by hypothesis in {drawn:.0f} s, "
          f"the rest mutated from them) in {sent:.0f} s ({n / sent:,.0f}/s); "
          f"{journaled:,} alerts journaled")
    print("by status: " + ", ".join(f"{code}: {count:,}"
                                    for code, count in sorted(statuses.items())))
    for (method, route, klass), count in sorted(by_route.items()):
        print(f"  {method} {route}: {klass}xx {count:,}")
    for request, code, text in faults[:20]:
        print(f"FAULT {code} {request.method} {request.path} query={request.query!r} "
              f"headers={request.headers!r}\n  body={request.body[:2000]!r}\n  answer={text[:500]}")
    print(f"5xx (not /readyz): {len(faults)} (target 0): {'met' if not faults else 'MISSED'}")
    return 1 if faults else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="requests to send")
    parser.add_argument("--corpus", type=int, default=3000, help="requests hypothesis draws")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 5,000 requests from a corpus of 300")
    args = parser.parse_args()
    if args.quick:
        args.n, args.corpus = 5000, 300
    return run(args.n, args.corpus, args.seed)


if __name__ == "__main__":
    sys.exit(main())
