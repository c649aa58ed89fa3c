"""Synthetic text the project generates for itself: no downloads, fully seeded.

Three families, in the formats later stages score:
  1. arithmetic word problems with worked GSM8K-style solutions ("<<a*b=c>>c", "#### n");
  2. short multiple-choice items (question, 4 choices, one correct);
  3. short instructions with answers (chat pairs).

Every generator takes a `random.Random` so callers control the seed; the same seed
always gives the same items.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

NAMES = ["Ava", "Ben", "Cleo", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jade",
         "Kai", "Lena", "Mo", "Nia", "Omar", "Pia", "Quin", "Rosa", "Sam", "Tara"]
ITEMS = ["apples", "books", "coins", "stamps", "marbles", "pencils", "cookies",
         "shells", "cards", "plums", "stickers", "beads"]
CONTAINERS = ["boxes", "bags", "baskets", "jars", "crates", "packs"]

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
ANIMALS = ["dog", "cat", "horse", "rabbit", "tiger", "goat", "mouse", "owl", "frog", "bear"]
NON_ANIMALS = ["rock", "chair", "spoon", "cloud", "river", "lamp", "brick", "table",
               "cup", "rope", "coin", "door"]
COLORS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black",
          "blood": "red", "a banana": "yellow", "an orange": "orange"}
OPPOSITES = {"hot": "cold", "big": "small", "fast": "slow", "up": "down", "open": "closed",
             "light": "dark", "wet": "dry", "early": "late", "full": "empty", "high": "low"}


@dataclass
class MathProblem:
    """A worked arithmetic problem. `steps` are (expression, value) pairs in order."""
    question: str
    steps: list[tuple[str, int]]
    lines: list[str]            # solution lines; line i uses {v0}..{vi} placeholders
    answer: int
    carry: tuple[str, int] = ("+", 0)   # step 2 = v0 <op> operand

    def values_from(self, v0: int) -> list[int]:
        """Intermediate results when the first one is `v0`, carried through step 2."""
        op, k = self.carry
        return [v0, {"+": v0 + k, "-": v0 - k, "*": v0 * k}[op]]

    def solution(self, values: list[int] | None = None) -> str:
        """Render the worked solution; `values` overrides the intermediate results."""
        vals = values if values is not None else [v for _, v in self.steps]
        kw = {f"v{i}": v for i, v in enumerate(vals)}
        body = "\n".join(line.format(**kw) for line in self.lines)
        return f"{body}\n#### {vals[-1]}"


def math_problem(rng: random.Random) -> MathProblem:
    """One 2-step word problem; the second step uses the first step's result."""
    name, item, box = rng.choice(NAMES), rng.choice(ITEMS), rng.choice(CONTAINERS)
    kind = rng.randrange(4)
    if kind == 0:  # multiply then subtract
        a, b = rng.randint(2, 9), rng.randint(3, 12)
        c = rng.randint(1, a * b - 1)
        q = (f"{name} has {a} {box} with {b} {item} in each. {name} gives away {c} {item}. "
             f"How many {item} does {name} have left?")
        v0, v1 = a * b, a * b - c
        lines = [f"{name} has {a} * {b} = {{v0}} {item}.",
                 f"After giving away {c}, {name} has {{v0}} - {c} = {{v1}} {item}."]
        steps = [(f"{a}*{b}", v0), (f"{v0}-{c}", v1)]
        carry = ("-", c)
    elif kind == 1:  # add then multiply
        a, b, k = rng.randint(2, 20), rng.randint(2, 20), rng.randint(2, 5)
        q = (f"{name} buys {a} {item} on Monday and {b} {item} on Tuesday. "
             f"Each of the {item} costs {k} dollars. How many dollars does {name} spend?")
        v0, v1 = a + b, (a + b) * k
        lines = [f"{name} buys {a} + {b} = {{v0}} {item}.",
                 f"They cost {{v0}} * {k} = {{v1}} dollars."]
        steps = [(f"{a}+{b}", v0), (f"{v0}*{k}", v1)]
        carry = ("*", k)
    elif kind == 2:  # subtract then add
        a = rng.randint(10, 40)
        b, c = rng.randint(1, a - 1), rng.randint(2, 30)
        q = (f"There are {a} {item} in a basket. {name} takes {b} of them and then puts "
             f"{c} new {item} in. How many {item} are in the basket now?")
        v0, v1 = a - b, a - b + c
        lines = [f"After {name} takes {b}, there are {a} - {b} = {{v0}} {item}.",
                 f"Adding {c} gives {{v0}} + {c} = {{v1}} {item}."]
        steps = [(f"{a}-{b}", v0), (f"{v0}+{c}", v1)]
        carry = ("+", c)
    else:  # multiply then add
        a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 25)
        q = (f"{name} packs {a} {box} of {b} {item} and has {c} loose {item}. "
             f"How many {item} does {name} have in total?")
        v0, v1 = a * b, a * b + c
        lines = [f"The {box} hold {a} * {b} = {{v0}} {item}.",
                 f"With the loose ones, {name} has {{v0}} + {c} = {{v1}} {item}."]
        steps = [(f"{a}*{b}", v0), (f"{v0}+{c}", v1)]
        carry = ("+", c)
    return MathProblem(q, steps, lines, v1, carry)


@dataclass
class ChoiceItem:
    """A 4-way multiple-choice item (ARC-like): `label` indexes `choices`."""
    question: str
    choices: list[str]
    label: int
    id: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def answer(self) -> str:
        return self.choices[self.label]


def _shuffle_choices(rng: random.Random, correct: str, wrong: list[str]) -> tuple[list[str], int]:
    choices = [correct] + wrong[:3]
    rng.shuffle(choices)
    return choices, choices.index(correct)


def choice_item(rng: random.Random) -> ChoiceItem:
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        q = f"What is {a} plus {b}?"
        correct = a + b
        wrong = rng.sample([x for x in range(max(2, correct - 10), correct + 11) if x != correct], 3)
        choices, label = _shuffle_choices(rng, str(correct), [str(w) for w in wrong])
    elif kind == 1:
        q = "Which of these is an animal?"
        choices, label = _shuffle_choices(rng, rng.choice(ANIMALS), rng.sample(NON_ANIMALS, 3))
    elif kind == 2:
        thing = rng.choice(sorted(COLORS))
        q = f"What color is {thing}?"
        wrong = rng.sample([c for c in sorted(set(COLORS.values())) if c != COLORS[thing]], 3)
        choices, label = _shuffle_choices(rng, COLORS[thing], wrong)
    elif kind == 3:
        word = rng.choice(sorted(OPPOSITES))
        q = f"What is the opposite of {word}?"
        wrong = rng.sample([w for w in OPPOSITES.values() if w != OPPOSITES[word]], 3)
        choices, label = _shuffle_choices(rng, OPPOSITES[word], wrong)
    else:
        nums = rng.sample(range(1, 100), 4)
        q = "Which number is the largest?"
        choices = [str(n) for n in nums]
        label = nums.index(max(nums))
    return ChoiceItem(q, choices, label)


def instruction(rng: random.Random) -> tuple[str, str]:
    """A short instruction and its answer."""
    kind = rng.randrange(6)
    if kind == 0:
        n = rng.randint(0, 20)
        return f"Write the number {n} in words.", f"The number {n} in words is {NUMBER_WORDS[n]}."
    if kind == 1:
        w = rng.choice(ANIMALS + NON_ANIMALS)
        return f"Spell the word {w} backwards.", f"{w} backwards is {w[::-1]}."
    if kind == 2:
        a, b = rng.randint(1, 30), rng.randint(1, 30)
        return f"What is {a} times {b}?", f"{a} times {b} is {a * b}."
    if kind == 3:
        word = rng.choice(sorted(OPPOSITES))
        return f"Give the opposite of the word {word}.", f"The opposite of {word} is {OPPOSITES[word]}."
    if kind == 4:
        xs = rng.sample(ANIMALS, 3)
        return ("Name three animals.", f"Three animals are the {xs[0]}, the {xs[1]} and the {xs[2]}.")
    nums = sorted(rng.sample(range(1, 60), 4))
    shown = nums[:]
    rng.shuffle(shown)
    return (f"Sort these numbers from smallest to largest: {', '.join(map(str, shown))}.",
            f"From smallest to largest: {', '.join(map(str, nums))}.")


def format_choice_prompt(item: ChoiceItem) -> str:
    letters = "ABCD"
    opts = "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(item.choices))
    return f"Question: {item.question}\n{opts}\nAnswer:"


def chat_pairs(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """n (user, assistant) pairs mixing the three families."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.4:
            p = math_problem(rng)
            out.append((p.question, p.solution()))
        elif r < 0.7:
            it = choice_item(rng)
            out.append((format_choice_prompt(it), f"The answer is {'ABCD'[it.label]}. {it.answer}"))
        else:
            out.append(instruction(rng))
    return out


def plain_documents(rng: random.Random, n: int) -> list[str]:
    """n raw-text documents (no chat markup) in the scored formats."""
    docs = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            p = math_problem(rng)
            docs.append(f"Question: {p.question}\nAnswer: {p.solution()}")
        elif r < 0.8:
            it = choice_item(rng)
            docs.append(f"{format_choice_prompt(it)} {it.answer}")
        else:
            ins, ans = instruction(rng)
            docs.append(f"{ins} {ans}")
    return docs


# The judge's side of MT-Bench: FastChat's four single-answer judge prompts (single-v1,
# single-math-v1 and their multi-turn forms; Apache-2.0, copied verbatim into
# evalkit/data/mtbench/judge_prompts_single.jsonl), filled with the project's questions and
# answers, each followed by "Rating: [[N]]". A tiny model pretrained on them answers a rating
# request in the format FastChat parses. The rating follows whether the judged answer is the
# right one; it means nothing beyond the format.

def judge_prompts() -> dict[str, dict]:
    import json

    from .data import path as packaged
    with open(packaged("mtbench", "judge_prompts_single.jsonl"), encoding="utf-8") as f:
        return {p["name"]: p for p in map(json.loads, f)}


def judge_conversations(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """n (system, user, assistant) judge conversations in FastChat's prompt layouts."""
    prompts = judge_prompts()
    names = sorted(prompts)
    out = []
    for _ in range(n):
        turns = []
        for _ in range(2):
            if rng.random() < 0.5:
                p = math_problem(rng)
                wrong = p.solution(p.values_from(p.steps[0][1] + rng.randint(1, 9)))
                turns.append((p.question, p.solution(), wrong))
            else:
                q, a = instruction(rng)
                turns.append((q, a, rng.choice([instruction(rng)[1], a.split(" ")[0], ""])))
        good = [rng.random() < 0.5 for _ in turns]
        shown = [t[1] if g else t[2] for t, g in zip(turns, good)]
        name = names[rng.randrange(len(names))]
        prompt = prompts[name]
        if name.endswith("multi-turn"):
            user = prompt["prompt_template"].format(question_1=turns[0][0], question_2=turns[1][0],
                                                    answer_1=shown[0], answer_2=shown[1],
                                                    ref_answer_1=turns[0][1], ref_answer_2=turns[1][1])
            ok = good[1]
        else:
            user = prompt["prompt_template"].format(question=turns[0][0], answer=shown[0], ref_answer_1=turns[0][1])
            ok = good[0]
        rating = rng.randint(6, 10) if ok else rng.randint(1, 5)
        out.append((prompt["system_prompt"], user, f"Rating: [[{rating}]]"))
    return out
