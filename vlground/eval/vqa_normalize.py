"""Answer normalization of the VQA evaluator family, quirks included, because the scores depend on them.

Two processors are built from the same steps:
- `evalai_answer` is the official TextVQA/EvalAI processor (mmf's EvalAIAnswerProcessor): lowercase,
  delete "," and "?", split off "'s", then the punctuation and digit/article steps.
- `vqa_prediction` and `process_punctuation` (for the answers) are the VQA-v2 evaluator as Qwen-VL
  ships it (eval_mm/vqa_eval.py): the prediction gets punctuation + digit/article processing; a ground-truth answer gets punctuation
  only, is never lowercased, and only when a question's answers are not all equal.

Quirks kept on purpose: the punctuation rule looks at the ORIGINAL text to choose between deleting a
mark and turning it into a space (and deletes every mark when any digit,digit appears); a period is
dropped unless a digit follows it, even after a digit ("5." -> "5"; the reference's `(?!<=\\d)` is a
lookahead that never fires, not a lookbehind); at most 32 periods are dropped, because the reference
passes `re.UNICODE` (32) where `re.sub` takes its count; number words become digits and "a", "an",
"the" go before the contraction table is applied; the table's capitalized keys ("Im", "Ive") can never
match the lowercased words."""
from __future__ import annotations

import re

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})

# key -> replacement, one pair per line; the same table in the VQA evaluator and in mmf.
_CONTRACTION_PAIRS = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've
couldnt've couldn't've|didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've
hadn'tve hadn't've|hasnt hasn't|havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's
howd how'd|howll how'll|hows how's|Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd
itd've it'd've|it'dve it'd've|itll it'll|let's let's|maam ma'am|mightnt mightn't
mightnt've mightn't've|mightn'tve mightn't've|mightve might've|mustnt mustn't|mustve must've
neednt needn't|notve not've|oclock o'clock|oughtnt oughtn't|ow's'at 'ow's'at|'ows'at 'ow's'at
'ow'sat 'ow's'at|shant shan't|shed've she'd've|she'dve she'd've|she's she's|shouldve should've
shouldnt shouldn't|shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd
somebodyd've somebody'd've|somebody'dve somebody'd've|somebodyll somebody'll|somebodys somebody's
someoned someone'd|someoned've someone'd've|someone'dve someone'd've|someonell someone'll
someones someone's|somethingd something'd|somethingd've something'd've|something'dve something'd've
somethingll something'll|thats that's|thered there'd|thered've there'd've|there'dve there'd've
therere there're|theres there's|theyd they'd|theyd've they'd've|they'dve they'd've|theyll they'll
theyre they're|theyve they've|twas 'twas|wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've
werent weren't|whatll what'll|whatre what're|whats what's|whatve what've|whens when's|whered where'd
wheres where's|whereve where've|whod who'd|whod've who'd've|who'dve who'd've|wholl who'll|whos who's
whove who've|whyll why'll|whyre why're|whys why's|wont won't|wouldve would've|wouldnt wouldn't
wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all|yall'll y'all'll|y'allll y'all'll
yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd|youd've you'd've
you'dve you'd've|youll you'll|youre you're|youve you've
"""
CONTRACTIONS = dict(pair.split(" ") for pair in _CONTRACTION_PAIRS.replace("\n", "|").split("|") if pair)

_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_LIMIT = 32  # re.UNICODE passed as re.sub's count in both references
VQA_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")  # Qwen-VL / VQA evaluator
EVALAI_DIGIT_COMMA = re.compile(r"(?<=\d)(,)+(?=\d)")  # mmf EvalAIAnswerProcessor


def process_punctuation(text: str, digit_comma: re.Pattern[str] = VQA_DIGIT_COMMA) -> str:
    """The evaluators' punctuation step: each mark is deleted when the original text has it next to
    a space (or has a digit,digit anywhere) and becomes a space otherwise; then periods not followed
    by a digit are deleted (the first 32 of them)."""
    delete_all = digit_comma.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        deleted = delete_all or (mark + " " in text) or (" " + mark in text)
        out = out.replace(mark, "" if deleted else " ")
    return _PERIOD.sub("", out, count=_PERIOD_LIMIT)


def process_digit_article(text: str) -> str:
    """Lowercase, number words to digits, articles dropped, then the contraction table, word by word."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def evalai_answer(text: str) -> str:
    """TextVQA's official normalization (EvalAI, mmf), applied to predictions and answers alike."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text, EVALAI_DIGIT_COMMA))


def vqa_prediction(text: str) -> str:
    """A prediction under Qwen-VL's VQA evaluator: whitespace, punctuation, digits and articles."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))
