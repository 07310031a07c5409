"""bf16 on CPUs with native bf16 (AMX-BF16 / AVX512-BF16): log-probs, a LoRA step and greedy decoding on tiny
models, against fp32. The bf16 tests need such a CPU: elsewhere
PyTorch emulates bf16 (slow, and not what `dtype="auto"` picks), so they are skipped there, saying so."""
import pytest
import torch

from cocos_lib.generation.dispatch import generate
from cocos_lib.logprobs import token_logprobs
from cocos_lib.hardware import cpu_bf16_flags
from cocos_lib.models import LoraSpec, load_policy
from cocos_lib.toy.tiny_models import make_tiny_policy
from cocos_lib.sampling import SamplingConfig

needs_bf16 = pytest.mark.skipif(not cpu_bf16_flags(), reason="this CPU has no amx_bf16/avx512_bf16: "
                                 "bf16 would be emulated, and dtype='auto' picks fp32 here")
TEXTS = ["def add(a, b):", "You are an expert Python programmer, and here is your task: Write a function",
         "assert is_even(4) == True\n", "import math\nfrom typing import List\n\ndef sum_list(lst", "[BEGIN]\n"]


def _rows(tok, prompts, comps):
    """Right-padded prompt + completion rows: input_ids, attention_mask [B, L], completion mask [B, L-1]."""
    seqs = [p + c for p, c in zip(prompts, comps)]
    L = max(map(len, seqs))
    ids = torch.full((len(seqs), L), tok.pad_token_id)
    am, mask = torch.zeros(len(seqs), L, dtype=torch.long), torch.zeros(len(seqs), L - 1)
    for r, (p, s) in enumerate(zip(prompts, seqs)):
        ids[r, :len(s)], am[r, :len(s)] = torch.tensor(s), 1
        mask[r, len(p) - 1:len(s) - 1] = 1
    return ids, am, mask


def _completion_logprob(model, rows, temperature: float) -> torch.Tensor:
    ids, am, mask = rows
    return (token_logprobs(model, ids, am, temperature=temperature) * mask).sum(-1)    # [B], fp32


@pytest.fixture(scope="module")
def gqa_dir(tmp_path_factory):
    """A tiny Qwen2 with grouped-query attention (4 query heads share 2 KV heads), as Qwen2.5."""
    return make_tiny_policy(tmp_path_factory.mktemp("gqa"), arch="qwen2", seed=4, num_attention_heads=4,
                            num_key_value_heads=2, hidden_size=64)


@needs_bf16
def test_auto_picks_bf16_on_this_cpu_and_lora_weights_stay_fp32(gqa_dir):
    p = load_policy(gqa_dir, dtype="auto", device="cpu", lora=LoraSpec(r=4, alpha=8))
    base = [w for n, w in p.model.named_parameters() if "lora_" not in n]
    lora = [w for n, w in p.model.named_parameters() if "lora_" in n]
    assert lora and all(w.dtype == torch.float32 and w.requires_grad for w in lora)
    assert all(w.dtype == torch.bfloat16 and not w.requires_grad for w in base)


@needs_bf16
def test_bf16_logprobs_are_close_to_fp32(gqa_dir):
    """Sequence log-probs of the same completions: bf16 weights, fp32 log-softmax, within 2% of fp32."""
    fp32, bf16 = (load_policy(gqa_dir, dtype=d, device="cpu") for d in ("fp32", "bf16"))
    tok = fp32.tokenizer
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    comps = generate(fp32, prompts, SamplingConfig(temperature=1.0, max_new_tokens=16, stop=None, batch_size=8),
                     seed=1)
    rows = _rows(tok, prompts, comps)
    with torch.no_grad():
        a, b = (_completion_logprob(p.model, rows, 0.9) for p in (fp32, bf16))
    assert b.dtype == torch.float32 and bf16.model.dtype == torch.bfloat16
    assert torch.allclose(a, b, rtol=0.02, atol=0.05), (a, b)


@needs_bf16
def test_a_bf16_lora_step_moves_the_adapter_and_lowers_the_loss(gqa_dir):
    """One AdamW step on -log p(completion) with bf16 base weights: the fp32 adapter moves, the loss falls."""
    p = load_policy(gqa_dir, dtype="bf16", device="cpu", lora=LoraSpec(r=4, alpha=8))
    tok = p.tokenizer
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    comps = [tok(" return a + b")["input_ids"]] * len(prompts)
    rows = _rows(tok, prompts, comps)
    params = [w for w in p.model.parameters() if w.requires_grad]
    before = [w.detach().clone() for w in params]
    opt = torch.optim.AdamW(params, lr=1e-2)
    losses = []
    for _ in range(3):
        loss = -_completion_logprob(p.model, rows, 1.0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(torch.isfinite(w.grad).all() for w in params)
    assert sum(float((w - b).abs().sum()) for w, b in zip(params, before)) > 0
    assert losses[-1] < losses[0]


@needs_bf16
@pytest.mark.parametrize("backend", ["hf", "static", "packed"])
def test_every_backend_decodes_in_bf16_and_agrees_with_fp32_greedy(gqa_dir, backend):
    """Greedy in bf16 equals greedy in fp32 on most rows (bf16 rounding may flip a near-tie), and the three
    backends agree with each other in bf16 up to those same near-ties."""
    fp32, bf16 = (load_policy(gqa_dir, dtype=d, device="cpu") for d in ("fp32", "bf16"))
    prompts = [fp32.tokenizer(t)["input_ids"] for t in TEXTS]
    cfg = SamplingConfig(greedy=True, max_new_tokens=8, stop=None, batch_size=3)
    want = generate(fp32, prompts, cfg, backend="hf")
    got = generate(bf16, prompts, cfg, backend=backend)
    assert [len(g) for g in got] == [8] * len(prompts)
    same_first = sum(g[0] == w[0] for g, w in zip(got, want))
    assert same_first >= len(prompts) - 1, (got, want)
