"""The package as a user installs it: every module of the tree is in a normal (non-editable) install,
and the import rule of pyproject.toml's [tool.importlinter] holds on it (layers import only
downwards, no circles), checked by import-linter. The check runs on the installed tree because only
there does cli/ sit inside the package as vlground/cli, so the commands are covered too; planted
imports show that it would catch a break."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The repository installed with pip into a folder of its own (no dependencies, no editable
    finder): what a wheel puts into site-packages. pip builds it in its own environment, with the
    setuptools pyproject.toml asks for (a venv's bundled one is too old for its licence field)."""
    target = tmp_path_factory.mktemp("installed")
    build = tmp_path_factory.mktemp("build")
    source = build / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "tests", "notebooks"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True)
    return target


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports with the repository's contracts on the package installed under `root`."""
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
                          cwd=root, capture_output=True, text=True, timeout=300)


def test_a_normal_install_holds_every_module(installed):
    expected = {p.relative_to(REPO).as_posix() for p in (REPO / "vlground").rglob("*.py")}
    expected |= {f"vlground/cli/{p.name}" for p in (REPO / "cli").glob("*.py")}
    expected |= {p.relative_to(REPO).as_posix() for p in (REPO / "vlground" / "fonts").iterdir()}
    present = {p.relative_to(installed).as_posix() for p in (installed / "vlground").rglob("*") if p.is_file()}
    assert expected - present == set()


def test_layers_and_no_circles(installed):
    result = lint(installed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Layers import only downwards KEPT" in result.stdout and "No import circles KEPT" in result.stdout


@pytest.mark.parametrize("module, planted, broken", [
    # an upward import, even one hidden inside a function
    ("core/geometry.py", "def _planted():\n    import vlground.tasks\n", "Layers import only downwards BROKEN"),
    # the bottom layer importing the commands (cli/ is vlground/cli once installed)
    ("io/sink.py", "from vlground.cli import errors\n", "Layers import only downwards BROKEN"),
    # a circle inside one layer: scores imports inputs already
    ("eval/inputs.py", "def _planted():\n    from vlground.eval import scores\n", "No import circles BROKEN"),
])
def test_a_planted_import_breaks_the_contract(installed, tmp_path, module, planted, broken):
    copy = tmp_path / "copy"
    shutil.copytree(installed, copy)
    path = copy / "vlground" / module
    path.write_text(path.read_text() + "\n\n" + planted)
    result = lint(copy)
    assert result.returncode == 1 and broken in result.stdout, result.stdout + result.stderr


def test_the_package_and_the_ocr_path_do_not_import_torch(tmp_path):
    """`import vlground`, the names it exports for drawing and parsing, and a whole `vlground ocr` run
    with the built-in engine stay free of torch, transformers and Ray (the light install has none)."""
    code = f"""
import sys
import vlground
vlground.parse, vlground.show, vlground.Result, vlground.load_image
after_import = sorted(m for m in ("torch", "transformers", "ray") if m in sys.modules)
from typer.testing import CliRunner
from vlground.cli.main import app
result = CliRunner().invoke(app, ["ocr", {str(REPO / "samples" / "shop_sign.png")!r}, "--out", {str(tmp_path / "ocr.jsonl")!r}])
assert result.exit_code == 0, result.output
print(after_import, sorted(m for m in ("torch", "transformers", "ray") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "[] []"
    assert "CORNER BAKERY" in (tmp_path / "ocr.jsonl").read_text()
