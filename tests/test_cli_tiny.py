"""`vlground tiny-model`: a tiny checkpoint to try the model commands offline, whose small default
answer budget keeps trial runs fast (its answers are noise however long)."""
from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.tasks import load_model

runner = CliRunner()


def _budgets(model) -> list:
    """Spy on the backend: the token budget of every request it is asked to answer."""
    seen, generate = [], model.backend._generate_batch

    def spy(requests, budgets, options):
        seen.extend(budgets)
        return generate(requests, budgets, options)

    model.backend._generate_batch = spy
    return seen


def test_the_trial_checkpoint_says_its_answers_are_noise_and_keeps_answers_short(tmp_path, tiny_checkpoint):
    out = tmp_path / "tiny"
    res = runner.invoke(app, ["tiny-model", "qwen2.5-vl", str(out)])
    assert res.exit_code == 0, res.output
    assert "answers are noise" in res.stderr and f"--model {out}" in res.stderr
    assert json.loads((out / "vlground_tiny.json").read_text())["answer_budget"] == 16
    image = Image.new("RGB", (64, 48), "white")
    model = load_model(out, device="cpu")
    seen = _budgets(model)
    model.ask(image, "what is this?")
    model.ask(image, "what is this?", max_new_tokens=40)  # the user's budget still wins
    assert seen == [16, 40]
    plain = load_model(tiny_checkpoint("qwen2.5-vl"), device="cpu")  # a test checkpoint keeps the task's budget
    seen = _budgets(plain)
    plain.ask(image, "what is this?")
    assert seen == [512]


def test_a_folder_that_holds_files_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    res = runner.invoke(app, ["tiny-model", "qwen2.5-vl", str(tmp_path)])
    assert res.exit_code == 2 and "not an empty folder" in res.stderr
    res = runner.invoke(app, ["tiny-model", "qwen9-vl", str(tmp_path / "new")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "qwen9-vl" in res.stderr
