"""RL step: RLOO advantages, losses and gradients against hand computations (CPU, tiny policy)."""
import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cocos_lib.logprobs import sequence_logprobs
from cocos_lib.rl import (RLConfig, build_batch, equal_group_share, first_turn_kl_loss, grpo_advantages, policy_loss,
                          rl_step, rloo_advantages, sequence_kl, token_logprobs)
from cocos_lib.trajectory import Trajectory, Turn


# ------------------------------------------------------------------ small trajectory fakes

def make_turn(prompt_ids: list, completion_ids: list, reward: float = 0.0) -> Turn:
    """A real Turn with only what the RL step reads (ids, reward)."""
    return Turn(prompt_ids, completion_ids, text="", code="", report=None, reward=reward)


def make_traj(turns: list, group: int, sample: int) -> Trajectory:
    """A real Trajectory without a task (the RL step never reads it): R comes from rewards.accumulated_reward."""
    return Trajectory(task=None, turns=turns, group=group, sample=sample)


def make_trajs(rewards, t1_completion=(5, 6, 7), shared=True):
    """Groups of k trajectories; rewards[g][i] = (r1, r2). Turn-2 completions differ per sample."""
    out = []
    for g, grp in enumerate(rewards):
        t1 = make_turn([10, 11, 12, 13], list(t1_completion), grp[0][0])
        for i, (r1, r2) in enumerate(grp):
            first = t1 if shared else make_turn([10, 11, 12, 13], [5 + i, 6, 7 + g], r1)
            second = make_turn([20, 21, 22 + g, 23, 24], [30 + i, 31 + g, 32 + 2 * i, 33], r2)
            out.append(make_traj([first, second], g, i))
    return out


class GradCapture(torch.optim.SGD):
    """SGD that records the gradients it sees (lr=0: the model stays as it is)."""
    def __init__(self, params, lr=0.0):
        self.params_list = list(params)
        super().__init__(self.params_list, lr=lr)
        self.seen = None

    def step(self, closure=None):
        self.seen = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in self.params_list]
        return super().step(closure)


@pytest.fixture
def policy(tiny_policy):
    """A private copy of the shared tiny policy (tests train it)."""
    p = copy.copy(tiny_policy)
    p.model = copy.deepcopy(tiny_policy.model)
    return p


def seq_logp(policy, traj, turn=2):
    """sum_t log pi(y_t) of one turn's completion, with grad."""
    b = build_batch([traj], [turn], policy.tokenizer.pad_token_id, "cpu")
    lp = token_logprobs(policy.model, b.input_ids, b.attention_mask)
    return (lp * b.mask).sum()


# ----------------------------------------------------------------------------- pure math

def test_rloo_advantages_hand_2x2():
    s = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert torch.equal(rloo_advantages(s), torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
    a3 = rloo_advantages(torch.tensor([[3.0, 0.0, 0.0]]))  # 3 - 0, 0 - 1.5, 0 - 1.5
    assert torch.allclose(a3, torch.tensor([[3.0, -1.5, -1.5]]))
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.ones(3, 1))


def test_grpo_advantages_hand_and_against_rloo():
    s = torch.tensor([[0.75, 0.25], [1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])
    # k = 2: mean 0.5, unbiased std |s1 - s2| / sqrt(2); RLOO: s1 - s2
    grpo = grpo_advantages(s, eps=1e-12)
    assert torch.allclose(grpo[:2], torch.tensor([[2 ** -0.5, -(2 ** -0.5)]] * 2), atol=1e-6)
    assert grpo[2:].abs().max() < 1e-6  # equal scores: A = 0, no division by zero
    assert rloo_advantages(s)[0].tolist() == [0.5, -0.5] and rloo_advantages(s)[1].tolist() == [1.0, -1.0]
    s4 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # mean 0.25, std sqrt(0.25) = 0.5
    assert torch.allclose(grpo_advantages(s4), torch.tensor([[0.75, -0.25, -0.25, -0.25]]) / (0.5 + 1e-4))
    assert torch.allclose(rloo_advantages(s4), 4 / 3 * (s4 - s4.mean(1, keepdim=True)))  # RLOO = k/(k-1) centred
    with pytest.raises(ValueError, match="k >= 2"):
        grpo_advantages(torch.zeros(3, 1))


def test_equal_group_share():
    assert equal_group_share(torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.0, 0.0], [0.25, 0.5]])) == 0.5
    assert equal_group_share(torch.tensor([[0.1, 0.1, 0.1]])) == 1.0


def test_sequence_logprobs_is_the_sum_of_completion_token_logprobs(tiny_policy):
    trajs = make_trajs([[(0, 1), (0, 0)], [(1, 1), (1, 0)]])
    b = build_batch(trajs, [2], tiny_policy.tokenizer.pad_token_id)
    seq = sequence_logprobs(tiny_policy.model, b, micro=3, temperature=0.9)
    with torch.no_grad():
        hand = [float((token_logprobs(tiny_policy.model, b.input_ids[r:r + 1], b.attention_mask[r:r + 1],
                                      temperature=0.9) * b.mask[r:r + 1]).sum()) for r in range(4)]
    assert seq.shape == (4,) and not seq.requires_grad
    assert seq.tolist() == pytest.approx(hand, abs=1e-4) and all(x < 0 for x in hand)
    ref = sequence_logprobs(copy.deepcopy(tiny_policy.model), b, micro=4, temperature=0.9)
    assert sequence_kl(seq[:, None], ref[:, None], torch.ones(4, 1)).abs().max() < 1e-5  # pi = pi_ref: KL 0


def test_policy_loss_gradient_hand_2x2():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    A = torch.tensor([2.0, -1.0])
    loss = policy_loss(logp, logp.detach(), A, mask, cliprange=0.2) / 2
    assert loss.item() == pytest.approx(-(2.0 - 1.0) / 2)  # ratio 1: -(1/N) sum_i A_i
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-1.0, -1.0, 0.0], [0.5, 0.5, 0.5]]))


def test_policy_loss_clip_stops_gradient():
    old = torch.zeros(2, 1)
    logp = torch.tensor([[0.5], [0.5]], requires_grad=True)  # ratio e^0.5 = 1.65 > 1.2
    loss = policy_loss(logp, old, torch.tensor([1.0, -1.0]), torch.ones(2, 1), cliprange=0.2)
    loss.backward()
    # A > 0 and ratio above 1+eps: clipped, no gradient; A < 0: unclipped branch is the max.
    assert logp.grad[0, 0] == 0.0
    assert logp.grad[1, 0] == pytest.approx(float(torch.exp(torch.tensor(0.5))))


def test_token_level_loss_and_kl_estimators():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0]])
    mask = torch.tensor([[1.0, 1.0]])
    assert sequence_kl(logp, ref, mask).item() == pytest.approx(0.5 - 1.0)
    A_tok = torch.tensor([[1.0, 3.0]])
    policy_loss(logp, logp.detach(), A_tok, mask, None).backward()
    assert torch.allclose(logp.grad, -A_tok)
    logp.grad = None
    first_turn_kl_loss(logp, ref, mask).backward()  # grad of 1/2 d^2 = d
    assert torch.allclose(logp.grad, torch.tensor([[0.5, -1.0]]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.lists(st.floats(0, 1), min_size=2, max_size=4)),
                min_size=1, max_size=5).filter(lambda g: len({len(x[1]) for x in g}) == 1),
       st.floats(0, 1), st.floats(0, 1))
def test_shared_turn1_advantages_do_not_depend_on_gamma(groups, g1, g2):
    """R = gamma r_1 + (r_2 - r_1): with r_1 shared in a group, gamma r_1 - r_1 cancels in A."""
    rewards = [[(r1, r2) for r2 in r2s] for r1, r2s in groups]
    trajs = make_trajs(rewards)

    def scores(g):
        return torch.tensor([[t.accumulated(g) for t in trajs[i:i + len(rewards[0])]]
                             for i in range(0, len(trajs), len(rewards[0]))], dtype=torch.float64)

    assert torch.allclose(rloo_advantages(scores(g1)), rloo_advantages(scores(g2)), atol=1e-12)


def test_build_batch_masks_only_completion_tokens():
    trajs = make_trajs([[(0, 1), (0, 0)]])
    b = build_batch(trajs, [2], pad_id=0)
    assert b.input_ids.shape == (2, 9) and b.turn.tolist() == [2, 2] and b.traj.tolist() == [0, 1]
    assert b.input_ids[0].tolist() == [20, 21, 22, 23, 24, 30, 31, 32, 33]
    assert b.mask[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # positions 4..7 predict tokens 5..8
    b1 = build_batch(trajs, [1, 2], pad_id=0)
    assert b1.turn.tolist() == [1, 2, 1, 2]
    assert b1.attention_mask[0].tolist() == [1] * 7 + [0, 0] and b1.mask[0].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]


# ------------------------------------------------------------------------ with the tiny LM

def test_token_logprobs_match_full_log_softmax(tiny_policy):
    b = build_batch(make_trajs([[(0, 1), (0, 0)]]), [1, 2], tiny_policy.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = tiny_policy.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
        full = torch.log_softmax(logits[:, :-1] / 0.9, -1).gather(-1, b.input_ids[:, 1:, None])[..., 0]
        part = token_logprobs(tiny_policy.model, b.input_ids, b.attention_mask, start=b.start(), temperature=0.9)
    assert part.shape == full.shape
    assert torch.allclose(part * b.mask, full * b.mask, atol=1e-5)


def test_rl_step_gradient_equals_hand_policy_gradient(policy):
    trajs = make_trajs([[(0.0, 1.0), (0.0, 0.0)], [(1.0, 1.0), (1.0, 0.5)]])  # R = 1, 0 | 0.5, 0
    cfg = RLConfig(gamma=0.5, kl_coef=0.01, cliprange=0.2, micro_batch=3, max_grad_norm=None)
    opt = GradCapture(policy.model.parameters())
    m = rl_step(policy, None, opt, None, trajs, cfg)  # not LoRA: reference() is a no-op -> KL 0
    A = [1.0, -1.0, 0.5, -0.5]
    assert m["kl"] == 0.0 and m["adv_abs_max"] == pytest.approx(1.0) and m["equal_groups"] == 0.0
    policy.model.zero_grad()
    hand = -sum(a * seq_logp(policy, t) for a, t in zip(A, trajs)) / 4
    hand.backward()
    assert m["loss"] == pytest.approx(0.0, abs=1e-6)  # sum of A_i * ratio 1 over a group is 0
    for p, g in zip(policy.model.parameters(), opt.seen):
        assert torch.allclose(g, p.grad, atol=1e-6, rtol=1e-4)


def test_kl_is_zero_before_first_update_with_frozen_copy_and_lora(policy, tiny_policy_dir):
    from cocos_lib.models import LoraSpec, frozen_reference, load_policy
    trajs = make_trajs([[(0, 1), (0, 0)], [(1, 1), (0, 0)]])
    ref = frozen_reference(policy)
    m = rl_step(policy, ref, torch.optim.SGD(policy.model.parameters(), lr=0.0), None, trajs, RLConfig())
    assert m["kl"] == 0.0
    lora = load_policy(tiny_policy_dir, dtype="fp32", device="cpu", lora=LoraSpec(r=4, dropout=0.0))
    assert frozen_reference(lora) is None
    opt = torch.optim.Adam([p for p in lora.model.parameters() if p.requires_grad], lr=0.05)
    m = rl_step(lora, None, opt, None, trajs, RLConfig(kl_coef=0.1))
    assert m["kl"] == 0.0
    m2 = rl_step(lora, None, opt, None, trajs, RLConfig(kl_coef=0.1))
    assert m2["kl"] != 0.0  # the adapter moved; the reference (adapter disabled) did not


def test_positive_advantage_logprob_rises_negative_falls(policy):
    trajs = make_trajs([[(0.0, 1.0), (0.0, 0.0)]])
    with torch.no_grad():
        before = [float(seq_logp(policy, t)) for t in trajs]
    opt = torch.optim.Adam(policy.model.parameters(), lr=1e-3)
    rl_step(policy, frozen_ref(policy), opt, None, trajs, RLConfig(kl_coef=0.0))
    with torch.no_grad():
        after = [float(seq_logp(policy, t)) for t in trajs]
    assert after[0] > before[0] + 1e-3 and after[1] < before[1] - 1e-3


def frozen_ref(policy):
    from cocos_lib.models import frozen_reference
    return frozen_reference(policy)


def test_turn1_tokens_get_no_gradient_when_only_turn2_is_trained(policy):
    """Two batches that differ only in the (shared) turn-1 completion give identical gradients."""
    rewards = [[(0.0, 1.0), (0.0, 0.0)], [(1.0, 0.5), (1.0, 1.0)]]
    grads = []
    for t1 in [(5, 6, 7), (40, 41, 42, 43, 44)]:
        opt = GradCapture(policy.model.parameters())
        rl_step(policy, None, opt, None, make_trajs(rewards, t1_completion=t1), RLConfig(train_turns=(2,)))
        grads.append(opt.seen)
    assert any(g.abs().sum() > 0 for g in grads[0])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_micro_batches_accumulate_to_the_full_batch_gradient(policy):
    trajs = make_trajs([[(0, 1), (0, 0)], [(1, 1), (0, 0)]], shared=False)
    seen, metrics = [], []
    ref = frozen_ref(policy)
    torch.manual_seed(2)
    with torch.no_grad():  # a reference away from the policy: KL != 0 enters the scores
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    # 4 rows per group: micro 1 and 3 take the two-pass path, 4 and 8 the one-pass (whole groups) path
    for micro in (1, 3, 4, 8):
        opt = GradCapture(policy.model.parameters())
        metrics.append(rl_step(policy, ref, opt, None, trajs,
                               RLConfig(train_turns=(1, 2), micro_batch=micro, kl_coef=0.1)))
        seen.append(opt.seen)
    for other, m in zip(seen[1:], metrics[1:]):
        assert m["adv_std"] == pytest.approx(metrics[0]["adv_std"], abs=1e-6)
        assert m["kl"] == pytest.approx(metrics[0]["kl"], abs=1e-5) and abs(m["kl"]) > 1e-3
        for a, b in zip(seen[0], other):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_first_turn_kl_pulls_turn1_towards_reference(policy):
    """beta_1 > 0: turn-1 rows are added, their k2 gradient equals the hand one; kl_t1 reported."""
    trajs = make_trajs([[(0, 1), (0, 1)]])  # equal rewards: A = 0, only the KL term acts
    ref = frozen_ref(policy)
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy away from the reference
        for p in policy.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    opt = GradCapture(policy.model.parameters())
    m = rl_step(policy, ref, opt, None, trajs, RLConfig(kl_coef=0.0, first_turn_kl_coef=0.25, max_grad_norm=None))
    assert m["kl_t1"] != 0.0 and m["equal_groups"] == 1.0
    policy.model.zero_grad()
    b = build_batch(trajs, [1], policy.tokenizer.pad_token_id)
    lp = token_logprobs(policy.model, b.input_ids, b.attention_mask)
    with torch.no_grad():
        rlp = token_logprobs(ref, b.input_ids, b.attention_mask)
    (0.25 * (0.5 * (lp - rlp) ** 2 * b.mask).sum() / 2).backward()
    assert m["kl_t1"] == pytest.approx(float(((lp - rlp) * b.mask).sum().detach() / 2), abs=1e-5)
    for p, g in zip(policy.model.parameters(), opt.seen):
        assert torch.allclose(g, p.grad, atol=1e-7, rtol=1e-4)


def test_token_level_kl_equals_sequence_level_at_start(policy):
    trajs = make_trajs([[(0, 1), (0, 0)], [(1, 1), (0, 0)]])
    seen = []
    for kl in ("sequence", "token"):
        opt = GradCapture(policy.model.parameters())
        rl_step(policy, frozen_ref(policy), opt, None, trajs, RLConfig(kl=kl, kl_coef=0.5))
        seen.append(opt.seen)
    for a, b in zip(*seen):
        assert torch.allclose(a, b, atol=1e-7)


def test_bad_inputs_fail_with_one_line():
    with pytest.raises(ValueError, match="kl='bogus'"):
        RLConfig(kl="bogus")
    with pytest.raises(ValueError, match="train_turns"):
        RLConfig(train_turns=())
    trajs = make_trajs([[(0, 1), (0, 0)]])[:1]
    with pytest.raises(ValueError, match="group sizes"):
        rl_step(type("P", (), {"model": None})(), None, None, None, trajs, RLConfig())


def test_first_turn_kl_also_applies_when_turn1_is_trained(policy):
    trajs = make_trajs([[(0, 1), (1, 1)]], shared=False)  # independent turn-1 samples
    ref = frozen_ref(policy)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    seen = []
    for coef in (0.0, 0.25):
        opt = GradCapture(policy.model.parameters())
        m = rl_step(policy, ref, opt, None, trajs, RLConfig(train_turns=(1, 2), first_turn_kl_coef=coef))
        seen.append(opt.seen)
    assert "kl_t1" in m and any(not torch.allclose(a, b) for a, b in zip(*seen))


def test_token_logprobs_without_logits_to_keep_and_in_bf16(tiny_policy):
    from cocos_lib.logprobs import _selective_log_softmax

    class NoKeep(torch.nn.Module):  # a model whose forward has no logits_to_keep (older transformers)
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, use_cache=False):
            return self.m(input_ids=input_ids, attention_mask=attention_mask)

    b = build_batch(make_trajs([[(0, 1), (0, 0)]]), [2], tiny_policy.tokenizer.pad_token_id)
    with torch.no_grad():
        a = token_logprobs(tiny_policy.model, b.input_ids, b.attention_mask, start=b.start())
        c = token_logprobs(NoKeep(tiny_policy.model), b.input_ids, b.attention_mask, start=b.start())
    assert torch.allclose(a * b.mask, c * b.mask, atol=1e-6)
    logits = torch.randn(2, 5, 50)
    idx = torch.randint(0, 50, (2, 5))
    ref = torch.log_softmax(logits, -1).gather(-1, idx[..., None])[..., 0]
    bf = _selective_log_softmax(logits.bfloat16(), idx)
    assert bf.dtype == torch.float32 and torch.allclose(bf, ref, atol=0.1)
    assert torch.allclose(_selective_log_softmax(logits, idx), ref, atol=1e-5)


def test_grad_scaler_gives_the_unscaled_gradient(policy):
    trajs = make_trajs([[(0, 1), (0, 0)]])
    seen = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=1024.0)):
        opt = GradCapture(policy.model.parameters())
        rl_step(policy, None, opt, None, trajs, RLConfig(max_grad_norm=None), scaler=scaler)
        seen.append(opt.seen)
    for a, b in zip(*seen):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-4)


def test_selective_log_softmax_of_bf16_logits_is_fp32_exact_and_its_gradient_too():
    """#15: log-softmax of bf16 logits computed in fp32 (bf16 rounding cost up to ~0.06 nats a token)."""
    from cocos_lib.logprobs import _selective_log_softmax
    torch.manual_seed(0)
    logits = (torch.randn(2, 7, 5000) * 8).bfloat16()  # wide logits, as a trained LM's
    idx = torch.randint(0, 5000, (2, 7))
    exact = torch.log_softmax(logits.double(), -1).gather(-1, idx[..., None])[..., 0]
    got = _selective_log_softmax(logits, idx)
    assert got.dtype == torch.float32 and float((got.double() - exact).abs().max()) < 1e-5
    exact_t = torch.log_softmax(logits.double() / 0.9, -1).gather(-1, idx[..., None])[..., 0]
    assert float((_selective_log_softmax(logits, idx, 0.9).double() - exact_t).abs().max()) < 1e-5
    # the hand-written backward: d/dz_v = (g / T)(1{v = y} - softmax(z / T)_v), checked in fp64
    z = torch.randn(2, 3, 11, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 11, (2, 3))
    assert torch.autograd.gradcheck(lambda t: _selective_log_softmax(t, y, 0.7), (z,))
    weights = torch.arange(14.0).view(2, 7)
    zb = logits.float().requires_grad_()
    (_selective_log_softmax(zb.bfloat16(), idx) * weights).sum().backward()
    zd = logits.double().requires_grad_()
    (torch.log_softmax(zd, -1).gather(-1, idx[..., None])[..., 0] * weights).sum().backward()
    assert torch.allclose(zb.grad.double(), zd.grad, atol=1e-2, rtol=1e-2)  # bf16 grads: 8-bit mantissa


class BiasedWhenNoGrad(torch.nn.Module):
    """The tiny LM, but its no-grad passes (pi_old, pi_ref) add +3 to the logits of `ids`: rho < 1."""
    def __init__(self, model, ids):
        super().__init__()
        self.m, self.ids = model, list(ids)

    def forward(self, input_ids, attention_mask, logits_to_keep=0, use_cache=False):
        out = self.m(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep,
                     use_cache=use_cache)
        if not torch.is_grad_enabled():
            out.logits[..., self.ids] += 3.0
        return out


def test_clipfrac_counts_only_active_clipping_as_trl(policy):
    """#15: TRL's pg_clipfrac counts rows whose clipped term is the max; |rho - 1| > eps alone is not enough."""
    trajs = make_trajs([[(0.0, 1.0), (0.0, 0.0)], [(1.0, 0.5), (1.0, 0.5)]])  # A = +1, -1 | 0, 0
    biased = copy.copy(policy)
    biased.model = BiasedWhenNoGrad(policy.model, range(30, 36))  # every turn-2 completion token
    cfg = RLConfig(kl_coef=0.0, micro_batch=1, max_grad_norm=None)  # micro 1 < k: pi_old from a no-grad pass
    m = rl_step(biased, None, GradCapture(policy.model.parameters()), None, trajs, cfg)
    b = build_batch(trajs, [2], policy.tokenizer.pad_token_id)
    with torch.no_grad():
        new = token_logprobs(policy.model, b.input_ids, b.attention_mask)
        old = token_logprobs(biased.model, b.input_ids, b.attention_mask)
    rho = torch.exp(((new - old) * b.mask).sum(-1))
    assert bool((rho < 0.8).all())  # all four rows are outside [1 - eps, 1 + eps] ...
    # ... but only the A < 0 row is clipped: A > 0 keeps -A rho (the max), A = 0 has equal terms
    assert m["clipfrac"] == pytest.approx(1 / 4) and m["adv_abs_max"] == pytest.approx(1.0)


def test_dropout_is_off_during_the_rl_step(tiny_policy_dir):
    """#15: a LoRA adapter with dropout gives the gradient of the same weights without dropout, clipfrac 0."""
    from cocos_lib.models import LoraSpec, load_policy
    assert LoraSpec().dropout == 0.0
    trajs = make_trajs([[(0.0, 1.0), (0.0, 0.0)], [(1.0, 0.5), (1.0, 0.0)]])
    seen, metrics = [], []
    for dropout in (0.0, 0.5):
        torch.manual_seed(4)  # the same lora_A init, then the same non-zero lora_B
        pol = load_policy(tiny_policy_dir, dtype="fp32", device="cpu", lora=LoraSpec(r=4, dropout=dropout))
        for name, w in pol.model.named_parameters():
            if "lora_B" in name:
                w.data.normal_(0, 0.5)
        pol.model.train()
        trainable = [w for w in pol.model.parameters() if w.requires_grad]
        opt = GradCapture(trainable)
        metrics.append(rl_step(pol, None, opt, None, trajs, RLConfig(micro_batch=1, max_grad_norm=None)))
        seen.append(opt.seen)
        drops = [m for m in pol.model.modules() if isinstance(m, torch.nn.Dropout)]
        assert len(drops) == (14 if dropout else 0) and all(m.training for m in drops)  # modes restored
    assert metrics[1]["clipfrac"] == 0.0 and metrics[1]["loss"] == pytest.approx(metrics[0]["loss"], abs=1e-7)
    for a, b in zip(*seen):
        assert torch.allclose(a, b, atol=1e-7)


def test_mask_from_pad_is_the_released_padding_mask():
    """#15: rows that ran past EOS count up to their first pad-id token (excluded), as TRL's RLOO; a pad id
    that is never sampled (Llama-3.2's released 128004) trains the whole completion, EOS included."""
    eos = 9
    traj = make_traj([make_turn([1, 2, 3], [30, 31, eos, 32, eos, 33])], 0, 0)
    pad_is_eos = build_batch([traj], [1], pad_id=eos, mask_from_pad=True)
    assert pad_is_eos.input_ids[0].tolist() == [1, 2, 3, 30, 31]
    assert pad_is_eos.mask[0].tolist() == [0, 0, 1, 1]  # 30 and 31: the first EOS and all after it are out
    other_pad = build_batch([traj], [1], pad_id=128, mask_from_pad=True)
    assert other_pad.mask[0].tolist() == [0, 0] + [1] * 6
    assert build_batch([traj], [1], pad_id=eos).mask[0].tolist() == [0, 0] + [1] * 6  # default: all tokens
    assert RLConfig().ignore_eos is False


def test_old_top_k_is_the_release_top_k_renormalised_pi_old(policy):
    """#15: top_k=k: log pi_old = log of softmax(z / T) renormalised on the top k (HF's warper, as the
    release's generate scores); pi_theta and pi_ref stay full, so at pi_theta = pi_ref the KL is sum -log M_t."""
    from cocos_lib.logprobs import _top_k_log_softmax
    z = torch.tensor([[[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 5.0]]])
    got = _top_k_log_softmax(z, torch.tensor([[0, 1]]), temperature=0.5, k=2)
    e = torch.exp(torch.tensor([4.0, 2.0]))  # row 1: u = (4, 2, 0, -2); row 2: u = (0, 0, 0, 10), ties kept
    row2 = -torch.log(3 + torch.exp(torch.tensor(10.0)))
    assert torch.allclose(got, torch.stack([torch.log(e[0] / e.sum()), row2])[None])
    trajs = make_trajs([[(0.0, 1.0), (0.0, 0.0)]])
    k, T = 5, 0.9
    m = rl_step(policy, frozen_ref(policy), GradCapture(policy.model.parameters()), None, trajs,
                RLConfig(top_k=k, temperature=T, kl_coef=0.0, micro_batch=4))
    b = build_batch(trajs, [2], policy.tokenizer.pad_token_id)
    with torch.no_grad():
        u = policy.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[:, :-1] / T
    top_mass = torch.softmax(u, -1).topk(k, -1).values.sum(-1)  # M_t
    assert m["kl"] == pytest.approx(float((-torch.log(top_mass) * b.mask).sum(-1).mean()), rel=1e-4)
    assert m["kl"] > 0 and RLConfig().top_k == 0
