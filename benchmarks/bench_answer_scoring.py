"""How fast vlground scores the answer benchmarks, against per-question ports of the reference loops:

- TextVQA, protocol "textvqa": the EvalAI/mmf evaluator (the answer processor applied to the
  prediction and to each of the 10 answers, then every unique answer scored over the leave-one-out
  subsets, as m4c's TextVQAAccuracyEvaluator does);
- TextVQA, protocol "vqa-v2": Qwen-VL's eval_mm/vqa_eval.py loop (answer dicts compared by
  identity, punctuation on the answers only when they differ);
- DocVQA ANLS: Qwen-VL's infographicsvqa_eval.py loop with its pure-Python Levenshtein; also a
  per-question loop calling rapidfuzz, the fastest a loop gets.

The ports share only the data tables (punctuation marks, number words, articles, contractions) with
vlground, not its logic. Each round runs every reference and vlground once, interleaved, on the same
synthetic questions (garbage collected before each timed call, so neither pays for the other's);
vlground's time includes aligning the predictions by id, the ports get them paired. The medians
are reported, and every question's score must be equal (==).

    python benchmarks/bench_answer_scoring.py              # 5,000 questions, 3 rounds
    python benchmarks/bench_answer_scoring.py --n 20000 --rounds 5
"""
from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import string
import time

from vlground.eval.vqa_normalize import ARTICLES, CONTRACTIONS, NUMBER_WORDS, PUNCTUATION

# ---- reference ports -------------------------------------------------------------------------

_EVALAI_COMMA = re.compile(r"(?<=\d)(\,)+(?=\d)")
_VQA_COMMA = re.compile(r"(\d)(\,)(\d)")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")


def _punctuation(text: str, comma_strip: re.Pattern) -> str:
    out = text
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or (re.search(comma_strip, text) is not None):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, re.UNICODE)


def _digit_article(text: str, number_map: dict) -> str:
    words = []
    for word in text.lower().split():
        word = number_map.setdefault(word, word)
        if word not in ARTICLES:
            words.append(word)
    for i, word in enumerate(words):
        if word in CONTRACTIONS:
            words[i] = CONTRACTIONS[word]
    return " ".join(words)


def evalai_reference(entries: list[tuple[str, list[str]]]) -> list[float]:
    """m4c TextVQAAccuracyEvaluator.eval_pred_list with mmf's EvalAIAnswerProcessor, per question."""
    number_map = dict(NUMBER_WORDS)

    def process(item: str) -> str:
        item = item.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
        item = item.replace("\n", " ").replace("\t", " ").strip()
        return _digit_article(_punctuation(item, _EVALAI_COMMA), number_map)

    scores = []
    for prediction, raw_answers in entries:
        answers = [process(a) for a in raw_answers]
        gt_answers = list(enumerate(answers))
        unique_scores = {}
        for unique in set(answers):
            accs = []
            for gt_answer in gt_answers:
                others = [item for item in gt_answers if item != gt_answer]
                matching = [item for item in others if item[1] == unique]
                accs.append(min(1, float(len(matching)) / 3))
            unique_scores[unique] = sum(accs) / len(accs)
        scores.append(unique_scores.get(process(prediction), 0.0))
    return scores


def vqa_v2_reference(entries: list[tuple[str, list[str]]]) -> list[float]:
    """Qwen-VL eval_mm/vqa_eval.py's per-question loop."""
    number_map = dict(NUMBER_WORDS)
    scores = []
    for prediction, raw_answers in entries:
        answers = [{"answer": a, "answer_id": j + 1} for j, a in enumerate(raw_answers)]
        result = prediction.replace("\n", " ").replace("\t", " ").strip()
        if len({a["answer"] for a in answers}) > 1:
            for answer in answers:
                answer["answer"] = _punctuation(answer["answer"], _VQA_COMMA)
        result = _digit_article(_punctuation(result, _VQA_COMMA), number_map)
        accs = []
        for datum in answers:
            others = [item for item in answers if item != datum]
            matching = [item for item in others if item["answer"] == result]
            accs.append(min(1, float(len(matching)) / 3))
        scores.append(float(sum(accs)) / len(accs))
    return scores


def _levenshtein(s1: str, s2: str) -> int:
    if len(s1) > len(s2):
        s1, s2 = s2, s1
    distances = range(len(s1) + 1)
    for i2, c2 in enumerate(s2):
        row = [i2 + 1]
        for i1, c1 in enumerate(s1):
            row.append(distances[i1] if c1 == c2 else 1 + min((distances[i1], distances[i1 + 1], row[-1])))
        distances = row
    return distances[-1]


def anls_reference(entries: list[tuple[str, list[str]]], distance=_levenshtein, threshold: float = 0.5) -> list[float]:
    """Qwen-VL infographicsvqa_eval.py's per-question loop (normalized strings, raw lengths)."""
    scores = []
    for prediction, answers in entries:
        values = []
        for answer in answers:
            gt = " ".join(answer.strip().lower().split())
            det = " ".join(prediction.strip().lower().split())
            length = max(len(answer.upper()), len(prediction.upper()))
            values.append(0.0 if length == 0 else float(distance(gt, det)) / float(length))
        result = 1 - min(values)
        scores.append(0 if result < threshold else result)
    return scores


# ---- synthetic questions ---------------------------------------------------------------------


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))


def _answer(rng: random.Random, vocab: list[str]) -> str:
    """Answers like TextVQA's and DocVQA's: words read off signs, numbers, prices, dates, names."""
    w = rng.choice
    forms = [
        lambda: w(vocab), lambda: f"{w(vocab)} {w(vocab)}", lambda: str(rng.randint(0, 2024)),
        lambda: f"{rng.randint(0, 99)}.{rng.randint(0, 99)}", lambda: f"${rng.randint(1, 500)}.00",
        lambda: f"{w(vocab).title()}'s", lambda: f"the {w(vocab)}", lambda: f"{w(vocab)}-{w(vocab)}",
        lambda: f"{rng.randint(1, 9)},{rng.randint(100, 999)}", lambda: w(["two", "one", "ten", "none", "yes", "no"]),
        lambda: f"{rng.randint(1, 28)} May {rng.randint(1950, 2020)}", lambda: w(["dont", "isnt", "cant", "o'clock"]),
        lambda: f"{w(vocab)} café", lambda: f"www.{w(vocab)}.com", lambda: f"({w(vocab)})",
    ]
    return w(forms)()


def _variant(rng: random.Random, text: str) -> str:
    """How people and models write the same answer differently."""
    return rng.choice([text, text.upper(), text.title(), text + ".", " " + text + "  ", text.replace(" ", "  "), text + "?"])


def synthetic(n: int, answers_per_question: int | None, seed: int = 0) -> list[tuple[str, list[str]]]:
    """(prediction, answers) pairs: a majority answer written several ways among others; the
    prediction is right, a variant of the right answer, a near miss or wrong."""
    rng = random.Random(seed)
    vocab = [_word(rng) for _ in range(3000)]
    entries = []
    for _ in range(n):
        count = answers_per_question or rng.randint(1, 3)
        main = _answer(rng, vocab)
        answers = [_variant(rng, main) if rng.random() < 0.7 else _answer(rng, vocab) for _ in range(count)]
        kind = rng.random()
        if kind < 0.5:
            prediction = main
        elif kind < 0.75:
            prediction = _variant(rng, main)
        elif kind < 0.85:
            prediction = main[:-1] + rng.choice(string.ascii_lowercase) if len(main) > 1 else main
        else:
            prediction = _answer(rng, vocab)
        entries.append((prediction, answers))
    return entries


# ---- the run ---------------------------------------------------------------------------------


def _vlground(kind: str, entries):
    from vlground.eval.docvqa import score_docvqa
    from vlground.eval.questions import Question
    from vlground.eval.textvqa import score_textvqa

    questions = [Question(str(i), answers) for i, (_, answers) in enumerate(entries)]
    records = [{"question_id": str(i), "questionId": str(i), "answer": p} for i, (p, _) in enumerate(entries)]

    def run():
        scores = score_docvqa(questions, records) if kind == "anls" else score_textvqa(questions, records, kind)
        return [q["score"] for q in scores.per_question]

    return run


def main() -> None:
    from rapidfuzz.distance import Levenshtein

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="questions per benchmark")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    vqa = synthetic(args.n, 10, seed=1)
    doc = synthetic(args.n, None, seed=2)
    cases = [
        ("TextVQA textvqa (EvalAI)", "textvqa", vqa, lambda: evalai_reference(vqa)),
        ("TextVQA vqa-v2 (vqa_eval.py)", "vqa-v2", vqa, lambda: vqa_v2_reference(vqa)),
        ("DocVQA ANLS (infographicsvqa_eval.py)", "anls", doc, lambda: anls_reference(doc)),
        ("DocVQA ANLS (per-question loop, rapidfuzz)", "anls", doc, lambda: anls_reference(doc, Levenshtein.distance)),
    ]
    for _, kind, entries, _ in cases:  # imports and first-call set-up stay out of the timings
        _vlground(kind, entries[:50])()
    reference_s = {name: [] for name, *_ in cases}
    ours_s = {name: [] for name, *_ in cases}
    checks = {}
    for _ in range(args.rounds):
        for name, kind, entries, reference in cases:
            ours = _vlground(kind, entries)
            gc.collect()  # each side starts without the other's garbage to collect
            start = time.perf_counter()
            expected = reference()
            reference_s[name].append(time.perf_counter() - start)
            gc.collect()
            start = time.perf_counter()
            got = ours()
            ours_s[name].append(time.perf_counter() - start)
            checks[name] = (sum(a != b for a, b in zip(expected, got)), sum(expected) / len(expected), sum(got) / len(got))
    print(f"{args.n} questions per benchmark, {args.rounds} interleaved rounds, medians:")
    for name, *_ in cases:
        ref_s, our_s = statistics.median(reference_s[name]), statistics.median(ours_s[name])
        differ, ref_score, our_score = checks[name]
        print(f"{name:44s} reference {args.n / ref_s:>11,.0f} q/s  vlground {args.n / our_s:>11,.0f} q/s  "
              f"{ref_s / our_s:6.1f}x   score {ref_score:.6f} vs {our_score:.6f}, {differ} questions differ")
    if any(differ for differ, *_ in checks.values()):
        raise SystemExit("vlground's scores differ from a reference loop")


if __name__ == "__main__":
    main()
