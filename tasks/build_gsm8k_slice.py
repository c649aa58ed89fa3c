"""Rebuild evalkit/data/gsm8k/ (the shipped slice of real GSM8K) from a clone of
openai/grade-school-math (MIT):

    git clone https://github.com/openai/grade-school-math /tmp/gsm && python tasks/build_gsm8k_slice.py /tmp/gsm

Rows are taken in file order, unchanged (question, answer), and split into disjoint sets:
  leaderboard/openai/gsm8k/main/train.jsonl  train rows 1-200: Smaug-style pairs and the 5-shot examples
  leaderboard/openai/gsm8k/main/test.jsonl   test rows 81-200: the scored leaderboard slice
  planted/openai/gsm8k/main/test.jsonl       test rows 1-40: planted into a target, then checked
  unseen.jsonl                               test rows 41-80 as contamination twins: "text" is
                                             question + " " + the rationale before "####", the text
                                             the contamination check builds for a GSM8K item
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "evalkit" / "data" / "gsm8k"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path: Path, items: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))


def main(repo: str) -> None:
    src = Path(repo)
    data = src / "grade_school_math" / "data"
    train, test = rows(data / "train.jsonl"), rows(data / "test.jsonl")
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if OUT.exists():
        shutil.rmtree(OUT)
    write(OUT / "leaderboard/openai/gsm8k/main/train.jsonl", train[:200])
    write(OUT / "leaderboard/openai/gsm8k/main/test.jsonl", test[80:200])
    write(OUT / "planted/openai/gsm8k/main/test.jsonl", test[:40])
    write(OUT / "unseen.jsonl", [{"id": f"test-{i + 1}", "text": r["question"] + " " + r["answer"].split("####")[0].strip()}
                                 for i, r in enumerate(test[40:80], start=40)])
    shutil.copy(src / "LICENSE", OUT / "LICENSE")
    (OUT / "SOURCE.md").write_text(
        f"# Real GSM8K rows (Cobbe et al. 2021), MIT license (LICENSE beside this file)\n\n"
        f"From github.com/openai/grade-school-math at commit {commit or 'unknown'}, "
        f"`grade_school_math/data/train.jsonl` and `test.jsonl`, rows in file order, unchanged.\n"
        f"Rebuilt by `tasks/build_gsm8k_slice.py` in the evalkit repository.\n\n"
        f"| file | rows |\n|---|---|\n"
        f"| leaderboard/openai/gsm8k/main/train.jsonl | train 1-200 (pairs, 5-shot examples) |\n"
        f"| leaderboard/openai/gsm8k/main/test.jsonl | test 81-200 (scored slice) |\n"
        f"| planted/openai/gsm8k/main/test.jsonl | test 1-40 (planted contamination) |\n"
        f"| unseen.jsonl | test 41-80 as contamination twins (`text` = question + rationale) |\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
