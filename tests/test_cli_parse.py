import json
import subprocess
import sys

from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app

runner = CliRunner()
CAKE = '```json\n[{"bbox_2d": [765, 394, 891, 550], "label": "top right brown cake"}]\n```'


def test_parse_prints_the_documented_json():
    out = runner.invoke(app, ["parse", CAKE, "--family", "qwen2.5-vl", "--image-size", "1024x1024"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data) == {"detections", "text"}
    det = data["detections"][0]
    assert det["label"] == "top right brown cake"
    assert abs(det["box"][0] - 765 * 1024 / 1036) < 1e-9


def test_parse_reads_stdin_and_size_from_an_image_with_exif_rotation(tmp_path):
    path = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (400, 200))
    exif = img.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: 200 wide, 400 high
    img.save(path, exif=exif)
    out = runner.invoke(app, ["parse", "-", "-f", "qwen2-vl", "--image", str(path)],
                        input="<|box_start|>(0,0),(1000,1000)<|box_end|>")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["detections"][0]["box"] == [0.0, 0.0, 200.0, 400.0]


def test_parse_errors_are_clear_without_traceback():
    out = runner.invoke(app, ["parse", "x", "-f", "llava", "--image-size", "10x10"])
    assert out.exit_code == 2 and "known families" in out.stderr and "Traceback" not in out.output
    out = runner.invoke(app, ["parse", "x", "-f", "qwen3-vl", "--image-size", "ten"])
    assert out.exit_code == 2 and "WIDTHxHEIGHT" in out.stderr
    out = runner.invoke(app, ["parse", "x", "-f", "qwen3-vl"])
    assert out.exit_code == 2 and "--image-size" in out.stderr


def test_prompt_command():
    out = runner.invoke(app, ["prompt", "ground", "-f", "qwen-vl", "--phrase", "the dog"])
    assert out.stdout.strip() == "<img></img><ref>the dog</ref><box>"
    for task, flag in (("ground", "--phrase"), ("detect", "--category"), ("ask", "--question")):
        out = runner.invoke(app, ["prompt", task, "-f", "qwen2.5-vl"])  # the flag to add, by its name
        assert out.exit_code == 2 and f"prompt {task} needs {flag}, e.g. vlground prompt {task}" in out.stderr


def test_parse_path_does_not_import_torch():
    code = "import sys; from vlground.cli.main import app; import vlground.grammar; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
