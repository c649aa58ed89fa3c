"""Score requests with the archived v1 model class (lm-evaluation-harness b281b09's
`hf-causal-experimental`, lm_eval/models/huggingface.py AutoCausalLM), in its own process.

    python tests/golden/run_archived_model.py MODEL_DIR REQUESTS.json OUT.json [--max-length N]

REQUESTS.json: {"loglikelihood": [[context, continuation], ...], "greedy_until": [[context, until], ...]}.
OUT.json: the archived class's answers, in the same order. The archived files are imported from
../shared/reference/lm-evaluation-harness-b281b09 (as record_v1_prompts.py does; nothing is
copied). One method is replaced: model loading, because the transformers installed here no
longer takes the load_in_8bit/load_in_4bit keywords b281b09 passes to from_pretrained; the model
is loaded in float32. Tokenization, context trimming, scoring and generation are the archived code.
A separate process because the archived package is also called `lm_eval`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record_v1_prompts as recorder  # noqa: E402


def archived_model_class(reference: Path):
    recorder.import_archived(reference, {})
    path = reference / "lm_eval" / "models" / "huggingface.py"
    spec = importlib.util.spec_from_file_location("lm_eval.models.huggingface", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import torch
    import transformers

    class Archived(module.AutoCausalLM):
        def _create_auto_model(self, *, pretrained, **kwargs):
            return transformers.AutoModelForCausalLM.from_pretrained(pretrained, dtype=torch.float32)
    return Archived


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("requests")
    ap.add_argument("out")
    ap.add_argument("--max-length", type=int)
    ap.add_argument("--reference", type=Path, default=recorder.DEFAULT_REFERENCE)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    lm = archived_model_class(args.reference)(pretrained=args.model, device="cpu", batch_size=1,
                                              max_length=args.max_length)
    reqs = json.loads(Path(args.requests).read_text())
    out = {"max_length": lm.max_length, "max_gen_toks": lm.max_gen_toks,
           "loglikelihood": [list(r) for r in lm.loglikelihood([tuple(r) for r in reqs.get("loglikelihood", [])])],
           "greedy_until": lm.greedy_until([(c, {"until": u}) for c, u in reqs.get("greedy_until", [])])}
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
