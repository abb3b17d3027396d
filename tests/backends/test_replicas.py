"""Replica routing: prefix affinity, bounded loads, health; and failover through OpenAIBackend."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.backends.replicas import ReplicaSet, prefix_key
from tokenlean.errors import ConfigError
from tokenlean.middleware.types import Message, Request

URLS = ["http://a/v1/", "http://b/v1/", "http://c/v1/"]


def chat(system: str, user: str) -> Request:
    return Request(messages=(Message("system", system), Message("user", user)))


def system_prompts(count: int, length: int = 400) -> list[str]:
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    return [f"Policy {i}: " + " ".join(rng.choice(words) for _ in range(length // 6)) for i in range(count)]


def test_prefix_key_is_the_rendered_start() -> None:
    request = chat("You are terse.", "What is 2+2?")
    assert prefix_key(request, 12) == "<system>You "
    assert prefix_key(request, 1000) == "<system>You are terse.\n<user>What is 2+2?\n"
    assert prefix_key(Request(prompt="abcdef"), 3) == "abc"
    # the same text in another role is another token prefix
    assert prefix_key(Request(messages=(Message("user", "You are terse."),)), 20) != prefix_key(request, 20)


def test_same_prefix_same_replica_different_questions() -> None:
    replicas = ReplicaSet(URLS, prefix_chars=128)
    for system in system_prompts(20):
        chosen = {replicas.pick(chat(system, f"question {i}")).url for i in range(10)}
        assert len(chosen) == 1


def test_distinct_prefixes_spread_over_replicas() -> None:
    replicas = ReplicaSet(URLS, prefix_chars=128)
    counts = Counter(replicas.pick(chat(system, "q")).url for system in system_prompts(600))
    assert set(counts) == set(URLS)
    assert min(counts.values()) > 600 / 3 * 0.6  # 64 virtual nodes keep the split near even


def test_removing_a_replica_moves_only_its_keys() -> None:
    """The consistent-hashing property: the other replicas keep their prefixes (and caches)."""
    full = ReplicaSet(URLS)
    smaller = ReplicaSet(URLS[:2])
    moved = 0
    for system in system_prompts(300):
        before = full.pick(chat(system, "q")).url
        after = smaller.pick(chat(system, "q")).url
        if before != URLS[2]:
            assert after == before
        else:
            moved += 1
    assert moved > 0


def test_bounded_load_spills_a_hot_prefix() -> None:
    replicas = ReplicaSet(URLS[:2], load_factor=1.25)
    hot = chat(system_prompts(1)[0], "q")
    placed = []
    for _ in range(40):
        replica = replicas.pick(hot)
        replicas.acquire(replica)
        placed.append(replica.url)
    counts = Counter(placed)
    assert len(counts) == 2
    assert max(counts.values()) <= 1.25 * 40 / 2 + 1
    home = placed[0]
    assert counts[home] > counts[next(u for u in counts if u != home)]


def test_down_replica_is_skipped_and_comes_back() -> None:
    replicas = ReplicaSet(URLS)
    prompts = [chat(s, "q") for s in system_prompts(60)]
    homes = [replicas.pick(p) for p in prompts]
    victim = homes[0]
    victim.mark_down("probe failed")
    assert all(replicas.pick(p) is not victim for p in prompts)
    victim.mark_up()
    assert [replicas.pick(p) for p in prompts] == homes


def test_all_down_still_tries_the_oldest_failure() -> None:
    replicas = ReplicaSet(URLS[:2])
    first, second = replicas.replicas
    first.mark_down("x")
    second.mark_down("y")
    assert replicas.pick(chat("s", "q")) is first
    assert replicas.pick(chat("s", "q"), exclude=[first]) is second
    assert replicas.pick(chat("s", "q"), exclude=[first, second]) is None


def test_round_robin_and_least_loaded_baselines() -> None:
    rr = ReplicaSet(URLS, routing="round_robin")
    request = chat("same", "same")
    assert [rr.pick(request).url for _ in range(6)] == URLS * 2
    least = ReplicaSet(URLS, routing="least_loaded")
    least.acquire(least.replicas[0])
    assert least.pick(request) is not least.replicas[0]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"routing": "random"}, "routing"),
        ({"load_factor": 0.5}, "load_factor"),
        ({"prefix_chars": 0}, "prefix_chars"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict, param: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReplicaSet(URLS, **kwargs)
    assert info.value.param == param
    with pytest.raises(ConfigError):
        ReplicaSet(["http://a/v1/", "http://a/v1/"])


async def test_failover_and_recovery_with_real_servers(upstream, free_port_url) -> None:
    """A replica that refuses connections is skipped, retried on the other, and probed back."""
    fake, good = upstream
    backend = OpenAIBackend([free_port_url, good], health_interval=0.2, max_retries=1)
    try:
        prompts = [chat(s, "q") for s in system_prompts(8)]
        answers = await asyncio.gather(*(backend.complete(p.replace(model="canned")) for p in prompts))
        assert all(a.text.endswith("Paris.") for a in answers)
        dead, alive = backend.replicas.replicas
        assert not dead.healthy and alive.healthy
        health = await backend.health()
        assert health["status"] == "degraded" and health["healthy"] == 1
        assert health["upstreams"][1]["models"] == ["fake-model"]
        assert len(fake.calls) == len(prompts)
    finally:
        await backend.aclose()


async def test_monitor_restores_a_replica_that_comes_back(start_upstream, free_port_url) -> None:
    _, good_server = start_upstream()
    late_port = int(free_port_url.rsplit(":", 1)[1])
    backend = OpenAIBackend([free_port_url, good_server.url], health_interval=0.2, max_retries=1)
    try:
        prompts = [chat(s, "q") for s in system_prompts(12)]
        late, _ = backend.replicas.replicas
        await asyncio.gather(*(backend.complete(p.replace(model="canned")) for p in prompts))
        assert not late.healthy
        late_fake, _ = start_upstream(late_port)  # the replica comes up on its port
        for _ in range(50):
            if late.healthy:
                break
            await asyncio.sleep(0.1)
        assert late.healthy, "the health monitor did not restore the replica"
        await asyncio.gather(*(backend.complete(p.replace(model="canned")) for p in prompts))
        assert late_fake.calls, "no prompt was routed back to the restored replica"
    finally:
        await backend.aclose()
