"""backend api: every sampling setting reaches the server, or the run stops before any call.

The scripted server (evalkit.devserver) keeps each request's fields, so the tests read what
an OpenAI-compatible server was asked for; `transformers serve` shows that it honours them.
"""
import pytest

from evalkit.backends.generate import GenOptions, Sampling, api_sampling_fields, generator
from evalkit.devserver import Script, ServerThread
from evalkit.errors import UserError

CHAT = [[{"role": "user", "content": "What is 2 + 3?"}]]


def _api(url: str, **kw) -> GenOptions:
    return GenOptions(backend="api", base_url=url, api_model="scripted", **kw)


def test_openai_fields_are_sent_and_each_sample_has_its_own_seed():
    """top_p and seed are OpenAI parameters: sent with every request (they were dropped). The
    n samples of a prompt are n requests with seeds seed, seed + 1, ... in prompt order."""
    with ServerThread(Script()) as srv:
        gen = generator("m", _api(srv.base_url, seed=7))
        out = gen.chat(CHAT * 2, [Sampling(max_new_tokens=5, n=2, temperature=0.7, top_p=0.9)] * 2, progress=False)
    assert [len(o) for o in out] == [2, 2]
    bodies = srv.script.bodies
    assert sorted(b["seed"] for b in bodies) == [7, 8, 9, 10]
    assert all(b["top_p"] == 0.9 and b["temperature"] == 0.7 and b["max_tokens"] == 5 for b in bodies)
    assert not any("top_k" in b or "min_tokens" in b or "generation_config" in b for b in bodies)


def test_an_openai_endpoint_refuses_top_k_and_min_new_tokens_before_any_call():
    with ServerThread(Script()) as srv:
        gen = generator("m", _api(srv.base_url))
        for sampling, named in ((Sampling(max_new_tokens=5, top_k=40), "top_k 40"),
                                (Sampling(max_new_tokens=5, min_new_tokens=2), "min_new_tokens 2")):
            with pytest.raises(UserError, match=named):
                gen.chat(CHAT, [Sampling(max_new_tokens=5), sampling], progress=False)
        assert srv.script.calls == 0


def test_a_vllm_server_gets_top_k_and_min_tokens():
    """vLLM's own sampling fields ride in the body (what openai's extra_body sends); top_k 0
    (no cut) is vLLM's -1, so the server's generation_config default does not apply."""
    with ServerThread(Script()) as srv:
        gen = generator("m", _api(srv.base_url, seed=3, api_server="vllm"))
        gen.chat(CHAT * 2, [Sampling(max_new_tokens=6, top_k=40, min_new_tokens=2), Sampling(max_new_tokens=6)],
                 progress=False)
    by_seed = {b["seed"]: b for b in srv.script.bodies}
    assert (by_seed[3]["top_k"], by_seed[3]["min_tokens"]) == (40, 2)
    assert (by_seed[4]["top_k"], by_seed[4]["min_tokens"]) == (-1, 0)


def test_server_kinds():
    p = Sampling(max_new_tokens=4, top_k=5, min_new_tokens=1, top_p=0.5)
    assert api_sampling_fields(p, 1, "transformers") == {
        "top_p": 0.5, "seed": 1, "generation_config": '{"do_sample": true, "top_k": 5, "min_new_tokens": 1}'}
    with pytest.raises(UserError, match="unknown api server kind 'tgi'"):
        api_sampling_fields(p, 1, "tgi")


def test_transformers_serve_honours_top_k_and_seed(tiny_model_dir, tiny_model_served):
    """Through a real `transformers serve`: at temperature 1.5 a sample with no cut is not
    the greedy answer, and with top_k 1 it is (top_k reached the model's generate); with no
    cut, the same seed gives the same sample twice."""
    opt = GenOptions(backend="api", base_url=tiny_model_served, api_model=str(tiny_model_dir), seed=11,
                     api_server="transformers")
    gen = generator(str(tiny_model_dir), opt)
    greedy, top1, free_a, free_b = (gen.chat(CHAT, [s], progress=False)[0][0] for s in (
        Sampling(max_new_tokens=12, temperature=0.0),
        Sampling(max_new_tokens=12, temperature=1.5, top_k=1),
        Sampling(max_new_tokens=12, temperature=1.5),
        Sampling(max_new_tokens=12, temperature=1.5)))
    assert free_a != greedy and top1 == greedy
    assert free_a == free_b
