"""Training losses: pure functions of sequence log-probs. No model, no state.

Every preference loss takes four tensors of shape (B,), the policy and reference log-probs
of the chosen (y_w) and rejected (y_l) completions, and returns a LossOutput whose first
element is the per-pair loss (B,). Sequence log-probs are SUMS over completion tokens unless
the caller chose `logp_reduction: length_average` (trainer side: see `logps.batch_logps` and `reduce_logps`).
The one maximum-likelihood loss, `sft`, takes the chosen completions' summed log-probs and
token counts instead (no rejected completion, no reference model: see REFERENCE_FREE).

With h_w = log pi(y_w|x) - log ref(y_w|x) and h_l = log pi(y_l|x) - log ref(y_l|x):

  dpo   Rafailov et al. 2023      -log sigmoid(beta * (h_w - h_l))
  dpop  Pal et al. 2024 (Smaug)   -log sigmoid(beta * (h_w - h_l - lambda * max(0, -h_w)))
        The penalty sits INSIDE the sigmoid and is scaled by beta (the corrected form).
        lambda = 0 is exactly DPO; while h_w >= 0 the gradient equals DPO's.
  ipo   Azar et al. 2023           (h_w - h_l - 1/(2*beta))^2     (tau = beta)
  hinge SLiC, Zhao et al. 2023     max(0, 1 - beta * (h_w - h_l))
  sft   maximum likelihood         NLL(y_w) (below); on-policy, the filtered behaviour-cloning
                                   arm of Tajwar et al. 2024 (train/onpolicy.py)

NLL(y_w), in `sft` and in `sft_weight`, is one quantity chosen by `nll_reduction`:
  token_mean (default)  -sum_t log pi(y_w,t) / |y_w|   per example, then the mean over examples
                        (each example counts once, whatever its length; TRL's SFTTrainer
                        averages over all tokens of a batch instead, weighting long ones more)
  sum                   -sum_t log pi(y_w,t) = -log pi(y_w|x), the sequence NLL
Next to a preference loss on SUMMED log-probs, a token-mean NLL makes `sft_weight`'s effect
depend on completion length: the preference term's gradient grows with |y_w|, the NLL
term's does not, so one alpha is relatively ~|y_w| times weaker on long completions than
on one-token ones. Align the two scales with `nll_reduction: sum` (NLL summed like the
log-probs) or with `logp_reduction: length_average` (both per token).

Options each loss declares in its signature (no catch-all: an option a loss does not take
is a TypeError, and `evalkit validate` rejects it in the experiment file):
  beta_chosen / beta_rejected  the 3D-properties remedy (Yan et al. 2024): the margin
                               becomes beta_w*h_w - beta_l*h_l (dpo, dpop; DPOP's penalty
                               is scaled by beta_w)
  label_smoothing eps          conservative DPO: (1-eps)*L(m) + eps*L(-m) (dpo, dpop)
  dpop_lambda                  DPOP's lambda (dpop only)
Valid for every loss (applied outside the loss function):
  sft_weight alpha             + alpha * NLL(y_w), the chosen completion's negative
                               log-likelihood reduced by `nll_reduction` (`add_sft`)
"""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F


class LossOutput(NamedTuple):
    losses: torch.Tensor            # (B,) per-pair loss
    chosen_rewards: Optional[torch.Tensor]    # (B,) beta * h_w, detached (None: sft)
    rejected_rewards: Optional[torch.Tensor]  # (B,) beta * h_l, detached (None: sft)
    penalty_active: Optional[torch.Tensor] = None  # (B,) bool, DPOP only: h_w < 0


def _margin_terms(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                  reference_rejected_logps, beta, beta_chosen, beta_rejected):
    h_w = policy_chosen_logps - reference_chosen_logps
    h_l = policy_rejected_logps - reference_rejected_logps
    beta_w = beta if beta_chosen is None else beta_chosen
    beta_l = beta if beta_rejected is None else beta_rejected
    return h_w, h_l, beta_w, beta_l


def _smoothed_logsigmoid_loss(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        *, beta: float, beta_chosen: float | None = None, beta_rejected: float | None = None,
        label_smoothing: float = 0.0) -> LossOutput:
    """-log sigmoid(beta_w*h_w - beta_l*h_l); beta_w = beta_l = beta unless given."""
    h_w, h_l, beta_w, beta_l = _margin_terms(policy_chosen_logps, policy_rejected_logps,
                                             reference_chosen_logps, reference_rejected_logps,
                                             beta, beta_chosen, beta_rejected)
    logits = beta_w * h_w - beta_l * h_l
    return LossOutput(_smoothed_logsigmoid_loss(logits, label_smoothing),
                      (beta_w * h_w).detach(), (beta_l * h_l).detach())


def dpop(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
         *, beta: float, dpop_lambda: float = 50.0, beta_chosen: float | None = None,
         beta_rejected: float | None = None, label_smoothing: float = 0.0) -> LossOutput:
    """-log sigmoid(beta_w*h_w - beta_l*h_l - beta_w*lambda*max(0, -h_w)).

    With one beta this is -log sigmoid(beta * (h_w - h_l - lambda * max(0, -h_w))).
    d/dh_w: DPO's gradient while h_w >= 0; (1 + lambda) times it while h_w < 0. At h_w = 0
    exactly (every pair at the first step, when the policy is the reference) the subgradient
    taken is 0, i.e. DPO's: relu's, not clamp's (clamp passes the gradient at the bound).
    """
    h_w, h_l, beta_w, beta_l = _margin_terms(policy_chosen_logps, policy_rejected_logps,
                                             reference_chosen_logps, reference_rejected_logps,
                                             beta, beta_chosen, beta_rejected)
    penalty = torch.relu(-h_w)
    logits = beta_w * h_w - beta_l * h_l - beta_w * dpop_lambda * penalty
    return LossOutput(_smoothed_logsigmoid_loss(logits, label_smoothing),
                      (beta_w * h_w).detach(), (beta_l * h_l).detach(), (h_w < 0).detach())


def ipo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        *, beta: float) -> LossOutput:
    """(h_w - h_l - 1/(2*tau))^2 with tau = beta.

    The IPO paper and TRL use length-averaged log-probs; pick `logp_reduction:
    length_average` in the variant for that form. The default (sum) is the same formula on
    summed log-probs.
    """
    h_w = policy_chosen_logps - reference_chosen_logps
    h_l = policy_rejected_logps - reference_rejected_logps
    losses = (h_w - h_l - 1.0 / (2.0 * beta)) ** 2
    return LossOutput(losses, (beta * h_w).detach(), (beta * h_l).detach())


def hinge(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
          *, beta: float) -> LossOutput:
    """SLiC's calibration hinge relu(1 - beta*(h_w - h_l)); add SLiC's NLL term with sft_weight."""
    h_w = policy_chosen_logps - reference_chosen_logps
    h_l = policy_rejected_logps - reference_rejected_logps
    losses = torch.relu(1.0 - beta * (h_w - h_l))
    return LossOutput(losses, (beta * h_w).detach(), (beta * h_l).detach())


NLL_REDUCTIONS = ("token_mean", "sum")


def nll(chosen_logps_sum: torch.Tensor, chosen_lengths: torch.Tensor, reduction: str = "token_mean") -> torch.Tensor:
    """(B,) negative log-likelihood of each chosen completion: its summed token log-probs,
    negated, and divided by its token count when `reduction` is token_mean."""
    if reduction == "sum":
        return -chosen_logps_sum
    if reduction == "token_mean":
        return -chosen_logps_sum / chosen_lengths.clamp(min=1)
    raise ValueError(f"unknown nll reduction {reduction!r} (one of {', '.join(NLL_REDUCTIONS)})")


def sft(policy_chosen_logps_sum: torch.Tensor, chosen_lengths: torch.Tensor, *,
        nll_reduction: str = "token_mean") -> LossOutput:
    """Maximum likelihood on the chosen completion alone: NLL(y_w) per example.

    Takes the SUMMED log-probs and token counts of y_w (not the four preference tensors):
    no rejected completion and no reference model enter it.
    """
    return LossOutput(nll(policy_chosen_logps_sum, chosen_lengths, nll_reduction), None, None)


LOSSES: dict[str, Callable[..., LossOutput]] = {"dpo": dpo, "dpop": dpop, "ipo": ipo, "hinge": hinge, "sft": sft}
# losses that need neither a reference model nor a rejected completion: the trainer skips
# the reference cache and batches the chosen completions alone
REFERENCE_FREE = frozenset({"sft"})


def loss_options(name: str) -> tuple[str, ...]:
    """The keyword options LOSSES[name] takes (its keyword-only parameters), in order.

    Each loss declares exactly the options it supports, so an unsupported one is a TypeError
    here and a validation error in the experiment file (config.Variant), never ignored.
    """
    params = inspect.signature(LOSSES[name]).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def add_sft(out: LossOutput, policy_chosen_logps_sum: torch.Tensor, chosen_lengths: torch.Tensor,
            sft_weight: float, nll_reduction: str = "token_mean") -> LossOutput:
    """L + alpha * NLL(y_w), NLL reduced by `nll_reduction` (the same quantity `sft` trains on)."""
    if sft_weight == 0:
        return out
    return out._replace(losses=out.losses + sft_weight * nll(policy_chosen_logps_sum, chosen_lengths, nll_reduction))
