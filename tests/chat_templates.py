"""Real chat templates written into a locally built tokenizer, and small random models for them.

Each template string is the one the named model family ships in its tokenizer_config.json
(Qwen2-Instruct's ChatML, Llama-3-Instruct, Mistral-7B-Instruct v0.1, Zephyr-7B-beta,
Gemma-it, Phi-3-mini-instruct), with that family's BOS/EOS. Nothing is downloaded: the
tokenizer is the tiny kit's byte-level BPE with the family's special tokens added, so the
templates' markers are single tokens as they are in the real vocabularies.
"""
from __future__ import annotations

QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

ZEPHYR = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# name: template, bos, eos, special tokens, transformers architecture, system messages allowed,
#       the end of a rendered assistant turn (what a sequence must end with: no extra EOS)
TEMPLATES = {
    "qwen2": dict(template=QWEN2, bos=None, eos="<|im_end|>", arch="qwen2", system=True,
                  specials=["<|im_start|>", "<|im_end|>", "<|endoftext|>"], turn_end="<|im_end|>\n"),
    "llama3": dict(template=LLAMA3, bos="<|begin_of_text|>", eos="<|end_of_text|>", arch="llama", system=True,
                   specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                             "<|eot_id|>"], turn_end="<|eot_id|>"),
    "mistral": dict(template=MISTRAL, bos="<s>", eos="</s>", arch="mistral", system=False,
                    specials=[], turn_end="</s>"),
    "zephyr": dict(template=ZEPHYR, bos="<s>", eos="</s>", arch="mistral", system=True,
                   specials=["<|user|>", "<|assistant|>", "<|system|>"], turn_end="</s>\n"),
    "gemma": dict(template=GEMMA, bos="<bos>", eos="<eos>", arch="gemma", system=False,
                  specials=["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], turn_end="<end_of_turn>\n"),
    "phi3": dict(template=PHI3, bos="<s>", eos="<|endoftext|>", arch="phi3", system=True,
                 specials=["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"],
                 turn_end="<|end|>\n<|endoftext|>"),
}


def template_tokenizer(base_tokenizer_dir, name: str):
    """The tiny kit's tokenizer with `name`'s special tokens, BOS/EOS and chat template."""
    from transformers import AutoTokenizer
    spec = TEMPLATES[name]
    tok = AutoTokenizer.from_pretrained(str(base_tokenizer_dir))
    tok.add_special_tokens({"additional_special_tokens": spec["specials"]}, replace_extra_special_tokens=False)
    if spec["bos"]:
        tok.bos_token = spec["bos"]
    tok.eos_token = spec["eos"]
    tok.chat_template = spec["template"]
    return tok


def no_template_tokenizer(base_tokenizer_dir):
    """The tiny kit's tokenizer with no chat template (a base model): standard rows concatenate."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(base_tokenizer_dir))
    tok.chat_template = None
    return tok


def random_model(tok, name: str, seed: int = 0):
    """A small randomly initialised model of the family's architecture, vocabulary len(tok)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    arch = TEMPLATES[name]["arch"] if name in TEMPLATES else name
    kw = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
              pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    if arch == "gemma":
        kw["head_dim"] = 8
    config = AutoConfig.for_model(arch, **kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    # a wider init than the default 0.02 so log-probs differ by template and position
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return model.eval()


def pairs(name: str) -> list[dict]:
    """Conversational pairs: single and multi turn, a system message where the template takes
    one, a completion opening with a newline (straddles the boundary on some templates),
    leading/trailing spaces and non-ASCII text."""
    def conv(prompt, chosen, rejected, system=None):
        msgs = ([{"role": "system", "content": system}] if system and TEMPLATES[name]["system"] else [])
        return {"prompt": msgs + prompt, "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    u = lambda text: {"role": "user", "content": text}          # noqa: E731
    a = lambda text: {"role": "assistant", "content": text}     # noqa: E731
    return [
        conv([u("What is 2 plus 3?")], "2 + 3 = 5\n#### 5", "2 + 3 = 6\n#### 6"),
        conv([u("Name a colour.")], "Blue.", "A colour is a thing.", system="Answer briefly."),
        conv([u("Count to three."), a("One, two, three."), u("Now backwards.")], "Three, two, one.",
             "One, two, three."),
        conv([u("Say hello.")], "\nHello there!", "\n\nHi."),
        conv([u("Translate: good day")], "Bonjour, très bien.", "Buenos días"),
        conv([u("  spaced question  ")], " leading space answer", "trailing space answer  "),
    ]


def base_pairs() -> list[dict]:
    """Standard rows for a tokenizer without a template. The second splits a word across the
    prompt/completion boundary (" the" + "re": " there" is one token), so it straddles it."""
    return [
        {"prompt": "What is 2 plus 3? ", "chosen": "2 + 3 = 5", "rejected": "2 + 3 = 6"},
        {"prompt": "Say: the", "chosen": "re is", "rejected": "re you"},
        {"prompt": "Name a colour.", "chosen": " Blue.", "rejected": " Red, I think."},
    ]
