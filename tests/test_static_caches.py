"""The "static" backend's KV caches over a run (cocos_lib/generation/static.py cache_length, _static_cache; rl.rl_step):
bucketed lengths keep the number of distinct cache shapes (= compiles of the decode step on a GPU) small over
many updates, and the caches are released before the RL step's backward."""
import random

import torch

from cocos_lib.generation import static as fastgen
from cocos_lib.generation.static import cache_length
from cocos_lib.rl import RLConfig, rl_step

NEW = 512
BATCH = 128


def test_cache_length_buckets():
    assert [cache_length(n) for n in (1, 256, 257, 385, 513, 769, 1025, 1537, 2049, 2275)] == [
        256, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 3072]
    for n in range(1, 5000, 7):
        assert n <= cache_length(n) < max(1.5 * n + 1, 257)          # holds n, at most 50% unused


def simulated_lengths(updates=20, seed=0):
    """Longest prompt + new tokens per generate call of a paper-profile run: turn 1 (the longest of 64 task prompts,
    few-shot, 400-1,336 tokens) and turn 2 (+ the first answer, 900-1,763 tokens: data/results/real/
    tokenizer_facts.json's ranges for HumanEval), two calls per update."""
    rng = random.Random(seed)
    return [(rng.randint(400, 1336) + NEW, rng.randint(900, 1763) + NEW) for _ in range(updates)]


def test_twenty_updates_need_few_cache_shapes(tiny_policy):
    held, created = {}, 0
    for turn1, turn2 in simulated_lengths():
        for tokens in (turn1, turn2):
            before = dict(held)
            cache = fastgen._static_cache(held, tiny_policy.model, BATCH, cache_length(tokens))
            created += all(cache is not c for c in before.values())
    shapes = {key for key in held}
    assert shapes == {(BATCH, 1024), (BATCH, 1536), (BATCH, 2048), (BATCH, 3072)} and created == 4   # once each
    # the former rule (a multiple of 64) on the same 40 calls: 17 shapes; with 4 kept, 32 caches built
    old_held, old_created = {}, 0
    for turn1, turn2 in simulated_lengths():
        for tokens in (turn1, turn2):
            before = dict(old_held)
            cache = fastgen._static_cache(old_held, tiny_policy.model, BATCH, -(-tokens // 64) * 64)
            old_created += all(cache is not c for c in before.values())
    assert len({-(-t // 64) * 64 for pair in simulated_lengths() for t in pair}) == 17 and old_created == 32


def test_rl_step_releases_the_static_caches_before_its_backward(tiny_policy):
    from test_rl import make_trajs
    fastgen._static_cache(tiny_policy.decode_cache.static_caches, tiny_policy.model, 4, 256)
    assert len(tiny_policy.decode_cache.static_caches) == 1
    seen = []

    class Probe(torch.optim.SGD):
        def step(self, closure=None):              # runs after the backward: the caches are gone by then
            seen.append(len(tiny_policy.decode_cache.static_caches))
            return super().step(closure)

    trajs = make_trajs([[(0.0, 1.0), (0.0, 0.0)], [(1.0, 1.0), (1.0, 0.5)]])
    rl_step(tiny_policy, None, Probe(tiny_policy.model.parameters(), lr=0.0), None, trajs, RLConfig(micro_batch=4))
    assert seen == [0] and tiny_policy.decode_cache.static_caches == {}
