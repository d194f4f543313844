"""A fuzzer that measures time: hypothesis builds a short unit from every grammar's building blocks
(tags, fences, brackets, quotes, white-space runs, HTML, markdown comments, numbers), the unit is
repeated to 12.5k, 25k, 50k and 100k characters, and parse must never raise, keep boxes inside
the image, and grow at most linearly: each doubling of the input at most triples the time.

Timings are the CPU time of the parsing thread (test_parse_reliability.clock: a loaded CI machine
stretches the wall clock, not the work), the minimum of five runs with the garbage collector
paused, plus an allowance of 25 ms for the allocator's steps
(a quadratic scan at 1e5 characters costs seconds, as the ones of issue 16 did); a failing example
is measured once more and the minimum of both measurements counts. The budget is fixed (max_examples), so the test stays at a few seconds."""
import gc

from hypothesis import HealthCheck, given, settings, strategies as st

from test_parse_reliability import PATHOLOGICAL, check, clock, grown, time_limit
from vlground.grammar import parse

SIZES = (12_500, 25_000, 50_000, 100_000)
NOISE_S = 0.025
BLOCKS = [
    # tag dialects
    "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "(", ")", "(1,2)", "(10,20),(30,40)", ",",
    # JSON
    "```json\n", "```", "[", "]", "{", "}", '"', "'", ":", '"bbox_2d": ', "'bbox_2d': ", '"label": "a"', "\\",
    '[1, 2, 3, 4]', '{"bbox_2d": [1, 2, 3, 4], "label": "x"}', "9" * 40, "-", ".", "1e400", "NaN",
    # white space
    " ", "  ", "\n", "\n\n", "\t", "\r\n", " \n ",
    # HTML
    "<a ", "<p ", 'data-bbox="1 2 3 4"', "data-bbox=", "<p data-bbox=\"10 20 30 40\">", "</p>", "</", "<", ">",
    "<!--", "-->", "<!DOCTYPE", "<br/>", "&amp;", "&#",
    # markdown and plain lines
    "<!-- Image (", "<!-- a", "1, 2, 3, 4)", "10,20,30,40 car", "- [", "]:", "a", "x",
    # reasoning before the answer
    "<think>", "</think>", "<think>\n", "\n</think>\n\n", "<answer>", "</answer>", "`", "</thin",
]
FAMILIES = ["qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl"]
SIZE = (100, 100)


def best_time(family: str, text: str, runs: int = 5, thinking: str = "auto") -> float:
    times = []
    for _ in range(runs):
        gc.disable()
        try:
            with time_limit(20):
                t = clock()
                result = parse(text, family, SIZE, thinking=thinking)
                times.append(clock() - t)
        finally:
            gc.enable()
        check(result)
    return min(times)


def growth(family: str, make, thinking: str = "auto") -> list[float]:
    return [best_time(family, make(n), thinking=thinking) for n in SIZES]


def linear(times: list[float]) -> bool:
    return all(later <= 3 * earlier + NOISE_S for earlier, later in zip(times, times[1:]))


def assert_linear(family: str, make, thinking: str = "auto") -> None:
    times = growth(family, make, thinking)
    if not linear(times):  # once more: a burst of load on the machine is not the parser
        times = [min(a, b) for a, b in zip(times, growth(family, make, thinking))]
    assert linear(times), f"time at {SIZES} characters: {[round(t, 4) for t in times]} s"
    assert times[-1] < 1.0, f"{times[-1]:.2f} s for 1e5 characters"  # issue 16: well under 1 s per 1e4


def repeat_to(prefix: str, unit: str, suffix: str):
    return lambda n: prefix + unit * max(1, (n - len(prefix) - len(suffix)) // max(1, len(unit))) + suffix


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    unit=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=6).map("".join),
    prefix=st.lists(st.sampled_from(BLOCKS), max_size=3).map("".join),
    suffix=st.lists(st.sampled_from(BLOCKS), max_size=3).map("".join),
    family=st.sampled_from(FAMILIES),
    thinking=st.sampled_from(["auto", "auto", "on", "off"]),
)
def test_grown_grammar_soup_is_linear_and_never_raises(unit, prefix, suffix, family, thinking):
    assert_linear(family, repeat_to(prefix, unit, suffix), thinking)


def test_every_known_pathological_family_grows_linearly():
    for name in PATHOLOGICAL:
        family = PATHOLOGICAL[name][0]
        assert_linear(family, lambda n, name=name: grown(name, n)[1])


def test_linear_check_catches_quadratic_growth():
    # the check can fail: a quadratic cost (simulated on the real sizes) is refused
    quadratic = [(n / SIZES[0]) ** 2 * 0.02 for n in SIZES]
    assert not linear(quadratic) and linear([(n / SIZES[0]) * 0.01 for n in SIZES])
