"""Every way evalkit loads a model, makes one write or score text outside training, or talks
to one over HTTP; one module each:

    models        load a model and tokenizer (hub id, local directory, known model name);
                  the one dtype policy (training: float32; inference: bf16 on a bf16 GPU,
                  float32 elsewhere)
    generate      generation: hf | vllm | api generators, Sampling, GenOptions
    client        the OpenAI-compatible chat client with retry (the only user of openai)
    serve         `transformers serve` as a child process, judge endpoints, free ports
    lm_eval       the lm-eval model name and arguments of each backend (lm-eval calls the model)
    lm_eval_v1    lm-eval's hf model with the archived v1 protocol's generation restored
    scoring       log-likelihood scoring of texts (the contamination check)
    fingerprint   content fingerprints of models (directories, hub commits, weights)
    known_models  real models materialised from packages (SmolLM2-135M-Instruct's GGUF)
    tiny          the offline tiny-model kit and its spec

Nothing under eval/ or train/ loads a model, generates, opens an HTTP client or starts a
server itself (training's own forward passes stay in train/). Modules here import only
downward (errors, logs, progress, prefix, rundir, schema, synth, data) and each other.
"""
