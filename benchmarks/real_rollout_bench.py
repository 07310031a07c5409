"""On the real model (CPU): the repo's rollout path against HF `generate`, same prompts, one run.

  python benchmarks/real_rollout_bench.py [--model qwen2.5-coder-0.5b-instruct] [--prompts 16]
      [--batches 8 16] [--nostop-cap 128] [--threads 2] [--out FILE]

Prompts: the chat-format turn-1 prompts of the first --prompts HumanEval tasks (pre-filled with
"```python\\n"), greedy, fp32, left padding, sorted by length into batches of B. Per batch size:

- `hf_nostop_512` (the released rollouts): HF generate, no stop string and no EOS, every row runs
  512 new tokens. On 2 CPU cores that is ~10 min a batch, so it runs to --nostop-cap tokens and
  its 512-token time is extrapolated: seconds(cap) + (512 - cap) * (seconds(cap) - seconds(1)) /
  (cap - 1), i.e. the measured prefill + first step, then the measured mean decode step (a step
  grows a little with length, so this slightly UNDER-states the baseline);
- `hf_eos`: plain HF generate with the model's EOS (<|im_end|>, <|endoftext|>) only, 512 tokens max:
  what an instruct model costs when it is left to finish its prose;
- `ours_hf` = `cocos_lib.generation.dispatch.generate` (backend "hf") with the chat format's stop "```": a
  row ends at the end of its code block (cocos_lib.prompts), and the batch when all rows have;
- `ours_packed`: the same with backend "packed" (cocos_lib.generation.packed: continuous batching, B rows
  live; rows that end are replaced by waiting prompts).

JSON lines: seconds, new tokens, new tokens/s, rollouts/s, and the ratios of the baselines' time to
ours (same rollouts). The extracted code of each "ours" and of `hf_eos` must agree: the share of
identical rows is printed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from cocos_lib.generation.dispatch import generate  # noqa: E402

from cocos_lib.sampling import SamplingConfig  # noqa: E402
from cocos_lib.models import load_policy  # noqa: E402
from cocos_lib.prompts import CHAT_STOP, extract_answer, render_prompt  # noqa: E402
from cocos_lib.rollout import decode_completion, encode_prompts  # noqa: E402
from cocos_lib.tasks import load_humaneval  # noqa: E402


def emit(rec: dict, out: str | None) -> dict:
    line = json.dumps(rec)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    return rec


def timed(fn):
    t = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t


def run(policy, prompts, cfg: SamplingConfig):
    return timed(lambda: generate(policy, prompts, cfg, backend="hf"))


def bench(policy, prompts, batch: int, cap: int, out: str | None, common: dict) -> None:
    n, rows, texts = len(prompts), {}, {}
    for backend in ("hf", "packed"):  # ours: stop at the end of the code block
        cfg = SamplingConfig(greedy=True, max_new_tokens=512, stop=CHAT_STOP, batch_size=batch)
        ids, secs = timed(lambda cfg=cfg, backend=backend: generate(policy, prompts, cfg, backend=backend))
        rows[f"ours_{backend}"], texts[backend] = dict(seconds=secs, new_tokens=sum(map(len, ids))), ids
    eos, t_eos = run(policy, prompts, SamplingConfig(greedy=True, max_new_tokens=512, stop=None, batch_size=batch))
    rows["hf_eos"], texts["eos"] = dict(seconds=t_eos, new_tokens=sum(map(len, eos))), eos
    # the released no-stop rollouts, measured to `cap` tokens and extrapolated to 512
    _, t_cap = run(policy, prompts, SamplingConfig(greedy=True, max_new_tokens=cap, stop=None, ignore_eos=True,
                                                   batch_size=batch))
    _, t_one = run(policy, prompts, SamplingConfig(greedy=True, max_new_tokens=1, stop=None, ignore_eos=True,
                                                   batch_size=batch))
    step = (t_cap - t_one) / (cap - 1)  # seconds per decode step, all batches of the run together
    rows["hf_nostop_512"] = dict(seconds=t_cap + (512 - cap) * step, new_tokens=512 * n, measured_to=cap,
                                 seconds_measured=t_cap, seconds_prefill_plus_1=t_one,
                                 decode_step_s=step / -(-n // batch))
    for name, r in rows.items():
        emit(dict(common, section=name, batch=batch, rollouts=n, **r, new_tokens_per_s=r["new_tokens"] / r["seconds"],
                  rollouts_per_s=n / r["seconds"]), out)
    code = {k: [extract_answer(decode_completion(policy, x), "chat") for x in v] for k, v in texts.items()}
    for backend in ("hf", "packed"):
        t = rows[f"ours_{backend}"]["seconds"]
        emit(dict(common, section=f"ratio_{backend}", batch=batch, rollouts=n,
                  speedup_vs_nostop_512=rows["hf_nostop_512"]["seconds"] / t, speedup_vs_eos=t_eos / t,
                  mean_new_tokens_ours=rows[f"ours_{backend}"]["new_tokens"] / n,
                  mean_new_tokens_eos=rows["hf_eos"]["new_tokens"] / n,
                  share_same_code_vs_eos=sum(a == b for a, b in zip(code[backend], code["eos"])) / n), out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--batches", nargs="+", type=int, default=[8, 16])
    p.add_argument("--nostop-cap", type=int, default=128, help="no-stop baseline measured to this many tokens")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers
    policy = load_policy(args.model, dtype="fp32", device="cpu")
    tasks = load_humaneval()[:args.prompts]
    prompts = encode_prompts(policy.tokenizer, [render_prompt(policy.tokenizer, t, [], "chat") for t in tasks], None)
    common = dict(model=args.model, device="cpu", dtype="fp32", threads=args.threads, prompt_format="chat",
                  greedy=True, torch=torch.__version__, transformers=transformers.__version__)
    emit(dict(common, section="env", argv=sys.argv[1:] if argv is None else list(argv),
              prompt_tokens=[len(x) for x in prompts]), args.out)
    for batch in args.batches:
        bench(policy, prompts, batch, args.nostop_cap, args.out, common)


if __name__ == "__main__":
    main()
