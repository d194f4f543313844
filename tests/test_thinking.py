"""Thinking as an option on the transformers runtime: `enable_thinking` reaches the chat template, the
reasoning has its own budget that ends in a forced `</think>` and an answer, and checkpoints say
whether they think (their template's word)."""
import pytest
from PIL import Image

from vlground.core.families import checkpoint_thinking, get_family
from vlground.core.options import DEFAULT_THINKING_TOKENS, GenerationOptions, OptionsError
from vlground.models.base import Request
from vlground.models.hf import HFBackend
from vlground.prompts import build_prompt
from vlground.testing import make_tiny_model
from vlground.testing.forced import forced_answers, with_reasoning

FINAL = '[{"bbox_2d": [100, 200, 500, 750], "label": "red car"}]'
DRAFT = '[{"bbox_2d": [900, 900, 990, 990], "label": "red car"}]'


@pytest.fixture(scope="module")
def qwen35(tiny_checkpoint):
    return HFBackend.load(tiny_checkpoint("qwen3.5"), get_family("qwen3.5"), device="cpu")


@pytest.fixture(scope="module")
def thinking_only(tmp_path_factory):
    """A Qwen3-VL-*-Thinking-shaped checkpoint: its template opens <think> whatever it is told."""
    folder = make_tiny_model("qwen3-vl", tmp_path_factory.mktemp("Qwen3-VL-Thinking"), thinking="always")
    return HFBackend.load(folder, get_family("qwen3-vl"), device="cpu")


def request(family="qwen3.5"):
    return Request(Image.new("RGB", (320, 240), "white"), build_prompt("ground", family, phrase="red car"))


def prompts_seen(backend, monkeypatch, options):
    """The prompt text each row of one generation was given."""
    seen = []
    original = backend.model.generate

    def generate(*args, **kwargs):
        seen.extend(backend.tokenizer.batch_decode(kwargs["input_ids"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(backend.model, "generate", generate)
    backend.generate([request()], options)
    return seen


@pytest.mark.parametrize("setting, ending", [("auto", "<think>\n"), ("on", "<think>\n"), ("off", "<think>\n\n</think>\n\n")])
def test_the_thinking_setting_reaches_the_chat_template(qwen35, monkeypatch, setting, ending):
    seen = prompts_seen(qwen35, monkeypatch, GenerationOptions(thinking=setting, max_new_tokens=2, max_thinking_tokens=2))
    assert seen[0].endswith("<|im_start|>assistant\n" + ending)


def test_checkpoints_say_whether_they_think(qwen35, thinking_only, tiny_checkpoint):
    assert qwen35.thinking_mode == "default"  # read from the template, not the family
    assert thinking_only.thinking_mode == "always"
    assert HFBackend.load(tiny_checkpoint("qwen2.5-vl"), get_family("qwen2.5-vl"), device="cpu").thinking_mode == "never"
    # a server's checkpoint: by its name
    assert checkpoint_thinking(get_family("qwen3.5"), "Qwen/Qwen3.5-9B") == "default"
    assert checkpoint_thinking(get_family("qwen3-vl"), "Qwen/Qwen3-VL-8B-Thinking") == "always"
    assert checkpoint_thinking(get_family("qwen3-vl"), "Qwen/Qwen3-VL-8B-Instruct") == "never"


def test_the_reasoning_budget_closes_the_reasoning_and_the_answer_still_comes(qwen35):
    text = with_reasoning(FINAL, DRAFT, words=200)
    tokens = qwen35.tokenizer.encode(text, add_special_tokens=False)
    with forced_answers(qwen35, lambda prompt: text):
        full = qwen35.generate([request()], GenerationOptions(max_thinking_tokens=len(tokens)))[0]
        cut = qwen35.generate([request()], GenerationOptions(max_thinking_tokens=12))[0]
    assert full.thinking and full.text == text  # within budget: written as the model chose
    reasoning, answer = cut.text.split("</think>")
    assert len(qwen35.tokenizer.encode(reasoning, add_special_tokens=False)) == 12
    assert text.startswith(reasoning) and "wrong object" not in reasoning
    assert answer == "\n\n" + FINAL  # the model went on from its own closer to the whole answer


def test_the_answer_budget_counts_from_the_closer(qwen35, monkeypatch):
    text = with_reasoning(FINAL, DRAFT, words=30)
    closer_at = len(qwen35.tokenizer.encode(text.split("</think>")[0] + "</think>", add_special_tokens=False))
    lengths, original = [], qwen35.model.generate
    monkeypatch.setattr(qwen35.model, "generate", lambda **kw: lengths.append(len(kw["input_ids"][0])) or
                        lengths.append(len((out := original(**kw))[0])) or out)
    with forced_answers(qwen35, lambda prompt: text):
        answer = qwen35.generate([request()], GenerationOptions(max_new_tokens=4, max_thinking_tokens=closer_at + 10))[0]
    reasoning, written = answer.text.split("</think>")
    assert text.startswith(reasoning + "</think>")  # the reasoning, longer than 4 tokens, is all there
    assert len(qwen35.tokenizer.encode(written, add_special_tokens=False)) == 4
    assert lengths[1] - lengths[0] == closer_at + 4  # generation stopped there, not at the batch's cap


def test_rows_of_one_batch_keep_their_own_budgets(qwen35):
    """One row closes early by itself, one is closed by the budget: each answer is whole."""
    short, long = with_reasoning(FINAL, DRAFT), with_reasoning(FINAL, DRAFT, words=100)
    requests = [Request(Image.new("RGB", (320, 240)), build_prompt("ground", "qwen3.5", phrase=p)) for p in ("cat", "dog")]
    budget = len(qwen35.tokenizer.encode(short, add_special_tokens=False))  # the short one closes within it
    with forced_answers(qwen35, {"cat": short, "dog": long}):
        answers = qwen35.generate(requests, GenerationOptions(max_thinking_tokens=budget, batch_size=2))
    assert answers[0].text == short
    assert answers[1].text.endswith("</think>\n\n" + FINAL) and len(answers[1].text) < len(long)


def test_thinking_off_on_a_checkpoint_that_always_thinks_is_a_clear_error(thinking_only):
    with pytest.raises(ValueError, match="always reasons before it answers.*--thinking auto"):
        thinking_only.generate([request("qwen3-vl")], GenerationOptions(thinking="off"))
    answer = thinking_only.generate([request("qwen3-vl")], GenerationOptions(max_new_tokens=2, max_thinking_tokens=3))[0]
    assert answer.thinking and "</think>" in answer.text  # auto: it thinks, and the budget closed it


def test_a_model_that_never_thinks_is_not_given_a_thinking_budget(tiny_checkpoint, monkeypatch):
    """Counted at the model's own generate call: decoding random tokens and encoding the text again
    need not give the same number of tokens."""
    backend = HFBackend.load(tiny_checkpoint("qwen3-vl"), get_family("qwen3-vl"), device="cpu")
    asked, generate = [], backend.model.generate

    def counted(*args, generation_config, **kwargs):
        output = generate(*args, generation_config=generation_config, **kwargs)
        asked.append((generation_config.max_new_tokens, output.shape[1] - kwargs["input_ids"].shape[1]))
        return output

    monkeypatch.setattr(backend.model, "generate", counted)
    answer = backend.generate([request("qwen3-vl")], GenerationOptions(max_new_tokens=3, min_new_tokens=3))[0]
    assert not answer.thinking and asked == [(3, 3)]


@pytest.mark.parametrize("fields, message", [
    (dict(thinking="maybe"), "thinking must be one of auto, on, off"),
    (dict(max_thinking_tokens=0), "max_thinking_tokens must be an integer >= 1"),
])
def test_thinking_options_are_checked(fields, message):
    with pytest.raises(OptionsError, match=message):
        GenerationOptions(**fields)
    assert GenerationOptions().thinking_budget == DEFAULT_THINKING_TOKENS


def test_reasoning_that_never_closes_gives_no_box_and_says_so(tiny_checkpoint):
    """The prompt opened the reasoning and the model ended without closing it: the draft box in it is
    not an answer (parsed as "auto", a text without tags would be taken whole)."""
    import vlground

    model = vlground.load_model(tiny_checkpoint("qwen3.5"), device="cpu")
    unfinished = with_reasoning(FINAL, DRAFT).split("</think>")[0]
    with forced_answers(model.backend, lambda prompt: unfinished):
        result = model.ground(Image.new("RGB", (320, 240)), "red car")
        answered = model.ground(Image.new("RGB", (320, 240)), "red car", thinking="off")
    assert result.detections == [] and result.reasoning_cut_short and "990" in result.reasoning
    assert len(answered.detections) == 1  # thinking off: the same words are the answer


def test_the_thinking_flag_reaches_the_model_from_the_command_line(tiny_checkpoint, tmp_path):
    import json

    from typer.testing import CliRunner

    from vlground.cli.main import app
    from vlground.testing.forced import forced_loading

    photo = tmp_path / "photo.png"
    Image.new("RGB", (320, 240)).save(photo)
    seen = []

    def answer(prompt):
        seen.append(prompt)
        return FINAL

    common = ["detect", str(photo), "red car", "--model", str(tiny_checkpoint("qwen3.5")), "--device", "cpu", "--json"]
    with forced_loading(answer):
        off = CliRunner().invoke(app, [*common, "--thinking", "off"])
        wrong = CliRunner().invoke(app, [*common, "--thinking", "maybe"])
    assert off.exit_code == 0, off.output
    assert seen[0].endswith("<think>\n\n</think>\n\n") and json.loads(off.stdout)["detections"]
    assert wrong.exit_code == 2 and "--thinking must be one of auto, on, off" in wrong.stderr


def test_a_tiny_trial_checkpoint_caps_the_reasoning_as_it_caps_the_answer(tmp_path, monkeypatch):
    """`vlground tiny-model` folders answer in a few tokens by default: their reasoning too, or a
    trial run of a thinking family would reason 4096 tokens of noise per image."""
    import vlground

    backend = vlground.load_model(make_tiny_model("qwen3.5", tmp_path / "trial", answer_budget=5), device="cpu").backend
    written, original = [], backend.model.generate
    monkeypatch.setattr(backend.model, "generate",
                        lambda **kw: written.append(len((out := original(**kw))[0]) - len(kw["input_ids"][0])) or out)
    answer = backend.generate([request()])[0]
    assert answer.thinking and "</think>" in answer.text and written[-1] <= 5 + 1 + 5
    backend.generate([request()], GenerationOptions(max_thinking_tokens=20, min_new_tokens=25))
    assert written[-1] > 11  # an explicit budget wins


def test_thinking_on_for_a_model_without_think_tokens_forces_the_closer_token_by_token(tiny_checkpoint):
    """An R1-style fine-tune of Qwen2.5-VL: `</think>` is several tokens of its vocabulary, and the
    budget still closes the reasoning, one forced token after another."""
    backend = HFBackend.load(tiny_checkpoint("qwen2.5-vl"), get_family("qwen2.5-vl"), device="cpu")
    closer = backend.tokenizer.encode("</think>", add_special_tokens=False)
    assert len(closer) > 1 and backend.thinking_mode == "never"
    text = "<think>" + " hmm" * 40 + "</think><answer>" + FINAL + "</answer>"
    with forced_answers(backend, lambda prompt: text):
        answer = backend.generate([request("qwen2.5-vl")], GenerationOptions(thinking="on", max_thinking_tokens=9,
                                                                            max_new_tokens=5))[0]
    ids = backend.tokenizer.encode(answer.text, add_special_tokens=False)
    assert answer.thinking and ids[9 : 9 + len(closer)] == closer  # closed at the budget
    assert len(ids) == 9 + len(closer) + 5  # then the answer's own 5 tokens
