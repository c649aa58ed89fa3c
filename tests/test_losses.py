"""Losses against numbers worked out by hand. log(1 + e^-z) is -log sigmoid(z)."""
import math

import pytest
import torch

from evalkit.train.losses import LOSSES, REFERENCE_FREE, add_sft, dpo, dpop, hinge, ipo


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def softplus_neg(z):  # -log sigmoid(z) = log(1 + e^-z)
    return math.log1p(math.exp(-z))


# pi(y_w)=-10, ref(y_w)=-11 -> h_w = +1 ; pi(y_l)=-12, ref(y_l)=-11 -> h_l = -1
POS = dict(policy_chosen_logps=t(-10.0), policy_rejected_logps=t(-12.0),
           reference_chosen_logps=t(-11.0), reference_rejected_logps=t(-11.0))
# pi(y_w)=-12, ref(y_w)=-11 -> h_w = -1 ; pi(y_l)=-14, ref(y_l)=-11 -> h_l = -3
NEG = dict(policy_chosen_logps=t(-12.0), policy_rejected_logps=t(-14.0),
           reference_chosen_logps=t(-11.0), reference_rejected_logps=t(-11.0))


def test_dpo_by_hand():
    # beta 0.5: z = 0.5 * (1 - (-1)) = 1 -> log(1 + e^-1) = 0.31326168751822286
    out = dpo(**POS, beta=0.5)
    assert out.losses.item() == pytest.approx(0.31326168751822286, abs=1e-12)
    assert out.chosen_rewards.item() == pytest.approx(0.5) and out.rejected_rewards.item() == pytest.approx(-0.5)


def test_dpop_equals_dpo_when_lambda_is_zero():
    for case in (POS, NEG):
        assert torch.allclose(dpop(**case, beta=0.3, dpop_lambda=0.0).losses, dpo(**case, beta=0.3).losses)


def test_dpop_penalty_is_zero_when_chosen_above_reference():
    # h_w = +1 >= 0: max(0, -h_w) = 0, so DPOP = DPO for any lambda
    for lam in (5.0, 50.0, 500.0):
        out = dpop(**POS, beta=0.5, dpop_lambda=lam)
        assert out.losses.item() == pytest.approx(0.31326168751822286, abs=1e-12)
        assert not out.penalty_active.item()


def test_dpop_by_hand_when_chosen_below_reference():
    # h_w = -1, h_l = -3, beta 0.5, lambda 2: z = 0.5 * (-1 + 3 - 2 * 1) = 0 -> log 2
    out = dpop(**NEG, beta=0.5, dpop_lambda=2.0)
    assert out.losses.item() == pytest.approx(math.log(2), abs=1e-12)
    assert out.penalty_active.item()
    # DPO on the same pair: z = 0.5 * 2 = 1
    assert dpo(**NEG, beta=0.5).losses.item() == pytest.approx(softplus_neg(1.0), abs=1e-12)


def _grads(fn, case, **kw):
    pc = case["policy_chosen_logps"].clone().requires_grad_(True)
    pr = case["policy_rejected_logps"].clone().requires_grad_(True)
    fn(pc, pr, case["reference_chosen_logps"], case["reference_rejected_logps"], **kw).losses.sum().backward()
    return pc.grad.item(), pr.grad.item()


def test_dpop_gradient_on_chosen_is_one_plus_lambda_times_dpo():
    lam, beta = 50.0, 0.3
    # While h_w < 0: dL/dh_w = -beta*(1+lambda)*sigmoid(-z), dL/dh_l = +beta*sigmoid(-z)
    gw, gl = _grads(dpop, NEG, beta=beta, dpop_lambda=lam)
    assert gw / -gl == pytest.approx(1 + lam, rel=1e-9)
    # ... and against DPO at the same logit z: DPOP's z at NEG is 0.3*(2 - 50) = -14.4;
    # give DPO h_w - h_l = -48 (h_w = -1, h_l = 47) so its z is also -14.4.
    dpo_case = dict(NEG, policy_rejected_logps=t(36.0))
    gw_dpo, _ = _grads(dpo, dpo_case, beta=beta)
    assert gw == pytest.approx((1 + lam) * gw_dpo, rel=1e-9)
    # While h_w >= 0 the gradients are DPO's exactly
    assert _grads(dpop, POS, beta=beta, dpop_lambda=lam) == pytest.approx(_grads(dpo, POS, beta=beta))


def test_ipo_by_hand():
    # h = h_w - h_l = 2 ; beta (tau) 0.5: (2 - 1/(2*0.5))^2 = (2 - 1)^2 = 1
    assert ipo(**POS, beta=0.5).losses.item() == pytest.approx(1.0)
    # tau 0.25: (2 - 2)^2 = 0 ; tau 1: (2 - 0.5)^2 = 2.25
    assert ipo(**POS, beta=0.25).losses.item() == pytest.approx(0.0)
    assert ipo(**POS, beta=1.0).losses.item() == pytest.approx(2.25)


def test_hinge_by_hand():
    # relu(1 - beta*h), h = 2: beta 0.1 -> 0.8 ; beta 0.5 -> 0 ; beta 1 -> 0
    assert hinge(**POS, beta=0.1).losses.item() == pytest.approx(0.8)
    assert hinge(**POS, beta=0.5).losses.item() == pytest.approx(0.0)
    # NEG: h = -1 - (-3) = 2 as well; a reversed pair h = -2: relu(1 + 0.2) = 1.2
    rev = dict(POS, policy_chosen_logps=t(-12.0), policy_rejected_logps=t(-10.0))
    assert hinge(**rev, beta=0.1).losses.item() == pytest.approx(1.2)


def test_separate_betas_by_hand():
    # beta_w 0.5, beta_l 0.25: z = 0.5*1 - 0.25*(-1) = 0.75
    out = dpo(**POS, beta=0.1, beta_chosen=0.5, beta_rejected=0.25)
    assert out.losses.item() == pytest.approx(softplus_neg(0.75), abs=1e-12)
    # DPOP with separate betas scales the penalty by beta_w: z = 0.5*(-1) - 0.25*(-3) - 0.5*2*1 = -0.75
    out = dpop(**NEG, beta=0.1, beta_chosen=0.5, beta_rejected=0.25, dpop_lambda=2.0)
    assert out.losses.item() == pytest.approx(softplus_neg(-0.75), abs=1e-12)


def test_label_smoothing_by_hand():
    # eps 0.1 at z = 1: 0.9*log(1+e^-1) + 0.1*log(1+e^1) = 0.9*0.313262 + 0.1*1.313262 = 0.413262
    out = dpo(**POS, beta=0.5, label_smoothing=0.1)
    assert out.losses.item() == pytest.approx(0.9 * softplus_neg(1) + 0.1 * softplus_neg(-1), abs=1e-12)
    assert out.losses.item() == pytest.approx(0.41326168751822286, abs=1e-12)


def test_sft_term_adds_token_mean_nll():
    # summed log pi(y_w) = -10 over 5 tokens -> NLL 2 ; alpha 0.5 -> +1
    base = dpo(**POS, beta=0.5)
    out = add_sft(base, t(-10.0), t(5.0), 0.5)
    assert out.losses.item() == pytest.approx(0.31326168751822286 + 1.0, abs=1e-12)
    assert add_sft(base, t(-10.0), t(5.0), 0.0) is base


def test_registry_and_batch_shapes():
    assert set(LOSSES) == {"dpo", "dpop", "ipo", "hinge", "sft"}
    b = {k: torch.randn(7, dtype=torch.float64) for k in POS}
    for name, fn in LOSSES.items():
        if name in REFERENCE_FREE:   # sft: the chosen sums and token counts (tests/test_sft_bc.py)
            out = fn(b["policy_chosen_logps"], torch.full((7,), 3))
        else:
            out = fn(**b, beta=0.3)
        assert out.losses.shape == (7,) and out[0] is out.losses, name


def test_dpop_gradient_at_h_w_zero_is_dpos():
    """At the first step the policy is the reference: h_w = h_l = 0 on every pair.

    z = beta * (0 - 0 - lambda * relu(0)) = 0, sigmoid(-z) = 1/2, so
    dL/dh_w = -beta * sigmoid(-z) = -0.3 * 0.5 = -0.15 (DPO's), not -(1 + 50) * 0.15 = -7.65,
    and dL/dh_l = +0.15.
    """
    zero = dict(policy_chosen_logps=t(-4.0), policy_rejected_logps=t(-6.0),
                reference_chosen_logps=t(-4.0), reference_rejected_logps=t(-6.0))
    gw, gl = _grads(dpop, zero, beta=0.3, dpop_lambda=50.0)
    assert gw == pytest.approx(-0.15, abs=1e-12) and gl == pytest.approx(0.15, abs=1e-12)
    assert (gw, gl) == pytest.approx(_grads(dpo, zero, beta=0.3), abs=1e-12)
    assert not dpop(**zero, beta=0.3, dpop_lambda=50.0).penalty_active.item()


def test_losses_take_exactly_their_options():
    from evalkit.train.losses import loss_options
    assert loss_options("dpo") == ("beta", "beta_chosen", "beta_rejected", "label_smoothing")
    assert loss_options("dpop") == ("beta", "dpop_lambda", "beta_chosen", "beta_rejected", "label_smoothing")
    assert loss_options("ipo") == ("beta",) and loss_options("hinge") == ("beta",)
    # a misspelt option is an error, not a silent default (lambda 50)
    with pytest.raises(TypeError, match="lam"):
        LOSSES["dpop"](**NEG, beta=0.5, lam=0.0)
    with pytest.raises(TypeError, match="label_smoothing"):
        LOSSES["ipo"](**POS, beta=0.5, label_smoothing=0.4)
