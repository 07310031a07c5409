"""The committed real-tokenizer facts and how rollout_bench uses them instead of its old assumption."""
import json
import runpy
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "data" / "results" / "real" / "tokenizer_facts.json"


def test_dist_by_hand():
    facts = runpy.run_path(str(ROOT / "benchmarks" / "tokenizer_facts.py"))
    d = facts["dist"]([5, 1, 3, 9, 7, 2, 8, 4, 6, 10])
    assert (d["median"], d["mean"], d["p90"], d["min"], d["max"], d["n"]) == (5.5, 5.5, 9, 1, 10, 10)


def test_committed_facts_shape():
    f = json.loads(FACTS.read_text())
    assert f["model"] == "qwen2.5-coder-0.5b-instruct" and f["vocab"] == 151936
    for group, names in {"solutions": ("canonical_solution", "reference_program", "reference_program_done"),
                         "prompts": ("completion_turn1", "completion_turn2_reference", "chat_turn1",
                                     "chat_turn2_reference")}.items():
        for name in names:
            d = f[group][name]
            assert d["n"] == len(d["counts"]) == 164 and d["min"] <= d["median"] <= d["p90"] <= d["max"]
    # the chat template adds the system turn and the pre-fill: every chat prompt is longer
    pairs = zip(f["prompts"]["chat_turn1"]["counts"], f["prompts"]["completion_turn1"]["counts"])
    assert all(c > p for c, p in pairs)


def test_rollout_bench_draws_measured_lengths():
    bench = runpy.run_path(str(ROOT / "benchmarks" / "rollout_bench.py"))
    pool = json.loads(FACTS.read_text())["solutions"]["reference_program_done"]["counts"]
    args = types.SimpleNamespace(lengths="measured", smoke=False, facts=str(FACTS), len_median=70.0, len_sigma=0.5)
    lens, how = bench["realistic_lengths"](args, 64, seed=3, cap=512)
    assert len(lens) == 64 and set(lens) <= set(pool) | {512} and "measured" in how["dist"]
    assert lens == bench["realistic_lengths"](args, 64, seed=3, cap=512)[0]  # seeded
    capped, _ = bench["realistic_lengths"](args, 64, seed=3, cap=100)
    assert max(capped) == 100 and capped == [min(100, x) for x in lens]
    args.lengths = "lognormal"
    old, how = bench["realistic_lengths"](args, 8, seed=8, cap=512)
    assert old == bench["assumed_lengths"](8, 70.0, 0.5, 8, 512) and how["dist"] == "lognormal (assumed)"
    facts = runpy.run_path(str(ROOT / "benchmarks" / "tokenizer_facts.py"))
    p = json.loads(FACTS.read_text())["prompts"]
    want = round((p["completion_turn1"]["median"] + 2 * p["completion_turn2_reference"]["median"]) / 3)
    assert facts["measured_prompt_len"](FACTS) == want == 405  # (403 before the released layout: a blank line and [BEGIN])


def test_real_rollout_bench_runs_on_a_tiny_chat_model(tiny_chat_policy_dir, tmp_path):
    """benchmarks/real_rollout_bench.py end to end with tiny sizes: every section, ratios consistent."""
    bench = runpy.run_path(str(ROOT / "benchmarks" / "real_rollout_bench.py"))
    out = tmp_path / "b.jsonl"
    bench["main"](["--model", tiny_chat_policy_dir, "--prompts", "3", "--batches", "2", "--nostop-cap", "4",
                   "--threads", "1", "--out", str(out)])
    recs = {r["section"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(recs) == {"env", "ours_hf", "ours_packed", "hf_eos", "hf_nostop_512", "ratio_hf", "ratio_packed"}
    base = recs["hf_nostop_512"]
    assert base["new_tokens"] == 3 * 512 and base["measured_to"] == 4
    assert abs(base["seconds"] - (base["seconds_measured"] + 508 * (base["seconds_measured"] - base[
        "seconds_prefill_plus_1"]) / 3)) < 1e-9
    r = recs["ratio_packed"]
    assert abs(r["speedup_vs_eos"] - recs["hf_eos"]["seconds"] / recs["ours_packed"]["seconds"]) < 1e-9
    assert recs["ours_hf"]["new_tokens"] == recs["ours_packed"]["new_tokens"]  # same greedy tokens
