"""The chunked LM-head path gives the plain path's log-probs and gradients."""
import pytest
import torch

from evalkit.train.logps import batch_logps, chunked_token_logps, install_completion_head


def test_chunked_token_logps_match_log_softmax_values_and_gradients():
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(101, 16, dtype=torch.float64, requires_grad=True)
    b = torch.randn(101, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 101, (37,))
    g = torch.randn(37, dtype=torch.float64)
    plain = torch.log_softmax(h @ w.T + b, dim=1).gather(1, t[:, None]).squeeze(1)
    grads_plain = torch.autograd.grad((plain * g).sum(), (h, w, b))
    for chunk in (1, 5, 37, 1000):
        ours = chunked_token_logps(h, w, b, t, chunk)
        grads = torch.autograd.grad((ours * g).sum(), (h, w, b))
        # float32 logits inside, as the plain trainer path (logits.float())
        assert torch.allclose(ours.double(), plain, atol=1e-5), chunk
        for a, e in zip(grads, grads_plain):
            assert torch.allclose(a, e, atol=1e-5), chunk


@pytest.mark.parametrize("pack", [False, True])
def test_model_with_completion_head_equals_full_logits(tiny_model_dir, pack):
    """Same tiny model, same batch: sums, lengths and every parameter's gradient agree."""
    from transformers import AutoModelForCausalLM

    from evalkit.backends.models import load_tokenizer
    from evalkit.train.builders import metamath_synthetic_pairs
    from evalkit.train.data import Row, make_batch, tokenize_rows
    torch.set_num_threads(1)
    tok = load_tokenizer(str(tiny_model_dir))
    data = tokenize_rows(tok, [Row(r, str(i)) for i, r in enumerate(metamath_synthetic_pairs(6, seed=2))], 160, 96)
    batch = make_batch(data.pairs, tok.pad_token_id, pack)
    assert ("allowed" in batch) == pack
    results = []
    for chunked in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        if chunked:
            assert install_completion_head(model)
        sums, lengths = batch_logps(model, batch)
        (sums * torch.linspace(-1, 1, len(sums))).sum().backward()
        results.append((sums.detach(), lengths, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (s0, l0, g0), (s1, l1, g1) = results
    assert torch.equal(l0, l1)
    assert torch.allclose(s0.double(), s1.double(), atol=1e-4, rtol=0), (s0 - s1).abs().max()
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5, rtol=1e-4), name
