"""Every Python and shell example in README.md and docs/ runs as written, so none can fail for a reader.

Each page's examples run top to bottom, as a reader would, in a folder of its own holding what they
name (`samples/`, `street.jpg`, `photos/`, ...), with the Python blocks of a page sharing one
namespace. Hub ids resolve, offline, to tiny random-weight checkpoints placed in a Hugging Face cache
(`vlground tiny-model`'s: 16-token answers, which are noise), so the model examples run on a CPU.

An example that cannot run here (it needs a GPU, a server on the network, a cluster, a dataset's
files, or it installs packages) carries an HTML comment right above it, `<!-- not run: why -->`: it
is still checked — Python compiles, shell passes `bash -n`, and every `vlground` command in it names
a real command with real options.

Why not a library: pytest-markdown-docs runs Python only; mktestdocs runs shell too but splits
fences on any line holding three backticks (the `vlground parse` example quotes a fenced answer), has
no way to mark an example, and runs in the current folder. Blocks are found with markdown-it-py, the
CommonMark parser that rich (and so typer) already brings.

The pages are also held to the tree they describe: the architecture page's package tree, the API
reference's entries, the README's and the home page's links, the notebook gallery and every dotted
`vlground.` name must match what exists."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->", re.S)
# hub ids the examples name -> the family of the tiny checkpoint that stands in for each
HUB_IDS = {
    "Qwen/Qwen2.5-VL-7B-Instruct": "qwen2.5-vl",
    "Qwen/Qwen3-VL-4B-Instruct": "qwen3-vl",
    "Qwen/Qwen3-VL-8B-Instruct": "qwen3-vl",
    "Qwen/Qwen-VL-Chat": "qwen-vl-chat",
    "Qwen/Qwen-VL": "qwen-vl",
    "Qwen/Qwen3.5-9B": "qwen3.5",
}
SNAPSHOT = "0" * 40


@dataclass
class Example:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def examples(page: Path) -> list[Example]:
    """The page's ```python and ```bash blocks, each with the reason it is not run, if any."""
    found, reason = [], None
    for token in MarkdownIt().parse(page.read_text(encoding="utf-8")):
        if token.type == "html_block":
            match = NOT_RUN.search(token.content)
            reason = match.group(1) if match else None
            continue
        language = token.info.split()[0] if token.type == "fence" and token.info.strip() else None
        if language in ("python", "bash"):
            found.append(Example(page, token.map[0] + 1, language, token.content, reason))
        reason = None
    return found


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    """A Hugging Face cache in which every hub id the docs name is a tiny trial checkpoint."""
    from vlground.testing import make_tiny_model

    cache = tmp_path_factory.mktemp("hub")
    built: dict[str, Path] = {}
    for hub_id, family in HUB_IDS.items():
        if family not in built:
            built[family] = make_tiny_model(family, cache / "built" / family, answer_budget=16)
        repo = cache / f"models--{hub_id.replace('/', '--')}"
        shutil.copytree(built[family], repo / "snapshots" / SNAPSHOT)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(SNAPSHOT)
    return cache


def _reader_folder(folder: Path, hub_cache: Path) -> dict[str, str]:
    """Lay out what the examples name; the environment they run in."""
    samples = ROOT / "samples"
    shutil.copytree(samples, folder / "samples")
    for name, sample in [("street.jpg", "street_sign_photo.jpg"), ("photo.jpg", "street_sign_photo.jpg"),
                         ("a.jpg", "street_sign_photo.jpg"), ("b.jpg", "receipt.jpg"), ("scan.png", "notice_two_columns.png"),
                         ("sign.jpg", "street_sign_photo.jpg"), ("photos/street.jpg", "street_sign_photo.jpg"),
                         ("photos/shop.png", "shop_sign.png"), ("scans/receipt.jpg", "receipt.jpg")]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(samples / sample, folder / name)
    coco = folder / "coco" / "train2014"
    coco.mkdir(parents=True)
    from PIL import Image

    Image.open(samples / "street_sign_photo.jpg").convert("RGB").resize((640, 480)).save(coco / "COCO_train2014_000000580957.jpg")
    shutil.copytree(hub_cache / "built" / "qwen2.5-vl", folder / "Qwen2.5-VL-3B-Instruct")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLGROUND_MODEL", "HF_"))}
    env.update(HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def _vlground_commands(code: str) -> list[list[str]]:
    """The `vlground ...` invocations in shell code, as argument lists (comments, pipes and
    continuation lines handled)."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # a quote spanning lines (a heredoc, a multi-line argument): not a command line
            continue
        current: list[str] | None = None
        for word in [*words, "|"]:
            if word in ("|", "&&", ";", "||"):
                if current:
                    commands.append(current)
                current = None
            elif current is not None:
                current.append(word)
            elif word == "vlground":
                current = []
    return commands


def _check_options(args: list[str]) -> str | None:
    """Why `vlground ARGS` names no real command or option, else None."""
    import typer

    from vlground.cli.main import app

    command = typer.main.get_command(app)
    command.get_params(command.make_context("vlground", ["-h"], resilient_parsing=True))  # the shared options added
    args = list(args)
    while hasattr(command, "commands") and args and args[0] in command.commands:
        command = command.commands[args.pop(0)]
    if hasattr(command, "commands"):
        return f"no command {args[:1]} in {sorted(command.commands)}"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in args:
        option = word.split("=", 1)[0]
        if option.startswith("-") and option != "-" and not option.lstrip("-").isdigit() and option not in known:
            return f"{option} is not an option of vlground {command.name}"
    return None


def _check(example: Example) -> None:
    if example.language == "python":
        compile(example.code, str(example), "exec")
        return
    syntax = subprocess.run(["bash", "-n"], input=example.code, capture_output=True, text=True)
    assert syntax.returncode == 0, f"{example}: {syntax.stderr}"
    for args in _vlground_commands(example.code):
        problem = _check_options(args)
        assert problem is None, f"{example}: vlground {' '.join(args)}: {problem}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_of_the_page_runs(page, hub_cache, tmp_path):
    found = examples(page)
    for example in found:
        _check(example)
    run = [{"where": str(e), "language": e.language, "code": e.code} for e in found if e.not_run is None]
    if not run:
        return
    env = _reader_folder(tmp_path, hub_cache)
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "docs_reader.py")], input=json.dumps(run), cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-5000:]


def test_the_option_check_finds_a_wrong_flag_and_a_wrong_command():
    assert _check_options(["ocr", "samples/", "--out", "x.jsonl", "--pages", "1-3"]) is None
    assert "--max-pixel" in _check_options(["detect", "a.jpg", "car", "--max-pixel", "5"])
    assert "no command" in _check_options(["detcet", "a.jpg", "car"])
    assert _vlground_commands("cat x | vlground parse - -f qwen-vl  # a comment\necho '--x'") == [["parse", "-", "-f", "qwen-vl"]]


def _architecture_tree() -> dict[str, str]:
    """docs/architecture.md's package tree: each top-level entry (`jobs/`, `tasks.py`) with its text."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text[text.index("```\nvlground/\n") + 4:]
    block = block[:block.index("```")]
    entries: dict[str, str] = {}
    name = None
    for line in block.splitlines()[1:]:
        if re.match(r"  \S", line):
            name = line.split()[0].rstrip(",")
            entries[name] = ""
        if name is not None:
            entries[name] += " " + line
    return entries


def _package_tree() -> dict[str, set[str]]:
    """The installed layout: each entry under vlground/ (cli/ is vlground.cli) with the modules in it."""
    tree: dict[str, set[str]] = {}
    for base, prefix in ((ROOT / "vlground", ""), (ROOT / "cli", "cli/")):
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).parts
            if not prefix and len(parts) == 1:
                tree.setdefault(parts[0], set())
            else:
                entry = prefix or parts[0] + "/"
                tree.setdefault(entry, set())
                if path.stem != "__init__":
                    tree[entry].add(path.stem)
                tree[entry].update(part for part in parts[1 if not prefix else 0:-1])  # a subpackage: its name too
    return tree


def test_the_architecture_page_names_every_module_of_the_package():
    """docs/architecture.md's tree is the real one: every package and module under vlground/ (and cli/) is
    named in its entry, and the page names nothing that is not there."""
    page, tree = _architecture_tree(), _package_tree()
    for entry, modules in tree.items():
        assert entry in page, f"docs/architecture.md does not list {entry}"
        words = set(re.findall(r"[a-z_0-9]+", page[entry]))
        missing = sorted(module for module in modules if module not in words)
        assert not missing, f"docs/architecture.md's {entry} does not name {missing}"
    gone = [entry for entry in page if entry.endswith((".py", "/")) and entry not in tree and not (ROOT / "vlground" / entry).exists()]
    assert not gone, f"docs/architecture.md lists {gone}, which the package does not have"


def test_the_api_reference_covers_every_name_vlground_exports():
    """docs/api.md renders each public name from the module `vlground` takes it from (`::: module.name`);
    the one data name, FAMILIES, is described in words."""
    import vlground

    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [name for name in vlground.__all__
               if f"::: {vlground._EXPORTS[name]}.{name}\n" not in page
               and (callable(getattr(vlground, name)) or f"`vlground.{name}`" not in page)]
    assert not missing, f"docs/api.md leaves out {missing}"


@pytest.mark.parametrize(("page", "prefix"), [("README.md", "docs/"), ("docs/index.md", "")])
def test_the_readme_and_the_home_page_link_every_page_of_the_site(page, prefix):
    """The README's links, and the site's home page's, reach every page in mkdocs.yml's nav (but the
    home page), and every page they link exists."""
    text = (ROOT / page).read_text(encoding="utf-8")
    linked = set(re.findall(rf"\]\({prefix}([\w.-]+\.md)(?:#[\w-]*)?\)", text))
    nav = set(re.findall(r":\s*([\w.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M))
    assert nav - {"index.md"} <= linked, f"{page} does not link {sorted(nav - {'index.md'} - linked)}"
    assert all((ROOT / "docs" / name).is_file() for name in linked), sorted(n for n in linked if not (ROOT / "docs" / n).is_file())


def test_every_vlground_name_the_pages_give_exists():
    """A dotted name in code spans (`vlground.core.records.Record`, `vlground.jobs.ray_pool.RayExecutor`)
    is a module or an attribute there, so a move in the tree cannot leave a page pointing at nothing.
    `vlground.ocrmypdf` is the OCRmyPDF plugin (it needs OCRmyPDF to import): found as a file."""
    import importlib

    def exists(name: str) -> bool:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError as error:
                if error.name == ".".join(parts[:cut]):
                    continue
                return (ROOT / Path(*parts[:cut])).with_suffix(".py").is_file()  # imports a package of its own
            for attribute in parts[cut:]:
                if not hasattr(found, attribute):
                    return False
                found = getattr(found, attribute)
            return True
        return False

    wrong = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for span in re.findall(r"`([^`]+)`", line):
                names = re.findall(r"(?<![\w.])vlground(?:\.[A-Za-z_]\w*)+", span)
                wrong += [f"{page.relative_to(ROOT)}:{number}: {name}" for name in names if not exists(name)]
    assert not wrong, wrong


def test_the_notebook_gallery_lists_every_notebook():
    page = (ROOT / "docs" / "python.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w.-]+\.ipynb)` \|", page, re.M))
    assert listed == {path.name for path in (ROOT / "notebooks").glob("*.ipynb")}
