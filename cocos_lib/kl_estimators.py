"""Three estimators of KL(pi_theta || pi_ref) from tokens sampled by pi_theta (Schulman, "Approximating KL
divergence", 2020), per token and summed over a row's masked tokens.

With y ~ pi_theta(.|s) and the log-ratio r = log pi_ref(y|s) - log pi_theta(y|s):

    k1 = -r                  = log pi_theta(y) - log pi_ref(y)     unbiased; one sample can be < 0
    k2 = r^2 / 2                                                    biased, >= 0, low variance
    k3 = (e^r - 1) - r                                              unbiased (E[e^r] = 1), >= 0

E[k1] = KL because E_{y~pi_theta}[log pi_theta(y) - log pi_ref(y)] is the definition of KL;
k3 adds e^r - 1, whose expectation is sum_y pi_ref(y) - 1 = 0, and e^x - 1 - x >= 0 for every x.
CoCoS (as TRL's RLOO) subtracts beta * sum_t k1 from the score (`rl.sequence_kl`); the SCoRe-style
first-turn term is k2 (`rl.first_turn_kl_loss`). The three agree to first order when pi_theta is
close to pi_ref (r near 0: k1 = -r, k2 = k3 = r^2/2 + O(r^3), and E[-r] = E[r^2/2] + O(r^3)).
"""
from __future__ import annotations

import torch


def k1(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_t mask (log pi_theta - log pi_ref)(y_t) per row [B] (= rl.sequence_kl)."""
    return ((logp - ref_logp) * mask).sum(-1)


def k2(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_t mask r_t^2 / 2 per row [B], r_t = log pi_ref - log pi_theta."""
    return (0.5 * (ref_logp - logp) ** 2 * mask).sum(-1)


def k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_t mask (e^{r_t} - 1 - r_t) per row [B], r_t = log pi_ref - log pi_theta."""
    r = ref_logp - logp
    return ((torch.exp(r) - 1 - r) * mask).sum(-1)
