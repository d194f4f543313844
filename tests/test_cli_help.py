"""The command line's own conventions: -h everywhere, --version, help without type tags, completion."""
import re

from typer.testing import CliRunner

import vlground
from vlground.cli.main import app

runner = CliRunner()


def _command_paths():
    """Every command and command group, as argument lists: [], ["detect"], ["eval", "refcoco"], ..."""
    import typer

    root = typer.main.get_command(app)
    paths, todo = [], [([], root)]
    while todo:
        path, command = todo.pop()
        paths.append(path)
        todo += [([*path, name], sub) for name, sub in getattr(command, "commands", {}).items()]
    return paths


def test_every_command_has_short_help_without_type_tags():
    paths = _command_paths()
    assert ["detect"] in paths and ["eval", "refcoco"] in paths and ["bench", "refcoco"] in paths
    for path in paths:
        res = runner.invoke(app, [*path, "-h"], terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        assert "Usage:" in res.output and "--help" in res.output
        tags = re.findall(r"<(?:bool|str|int|float|path|list\[\w+\])>", res.output)
        assert not tags, (path, tags)


def test_value_options_show_their_kind_in_capitals():
    res = runner.invoke(app, ["detect", "-h"], terminal_width=200)
    assert re.search(r"--batch-size\s+INTEGER", res.output) and re.search(r"--model\s+TEXT", res.output)
    assert re.search(r"--query\s+TEXT", res.output) and "--no-resume" not in res.output


def test_arguments_are_named_in_capitals_as_the_help_texts_name_them():
    """`Usage: vlground tiny-model [OPTIONS] {FAMILY} {OUT}` under "Write ... of FAMILY to OUT", as click and
    argparse name arguments; not `{family} {out}`."""
    res = runner.invoke(app, ["tiny-model", "-h"], terminal_width=80)
    assert "{FAMILY} {OUT}" in res.output and "of FAMILY to OUT" in res.output
    assert re.search(r"^  FAMILY\s", res.output, re.M)
    res = runner.invoke(app, ["ocr", "--out", "x.jsonl"])
    assert res.exit_code == 2 and "Missing argument 'PATHS'" in res.output


def test_version_long_and_short():
    for flag in ("--version", "-V"):
        res = runner.invoke(app, [flag])
        assert res.exit_code == 0 and res.output.strip() == f"vlground {vlground.__version__}"


def test_shell_completion_is_available_and_completes_commands():
    # the script `--show-completion` prints in a bash; asked for by name, since `--show-completion` finds the shell
    # among this process's ancestors, and a test run started by no shell (an IDE, a detached job) has none
    res = runner.invoke(app, [], prog_name="vlground", env={"_VLGROUND_COMPLETE": "source_bash"})
    assert res.exit_code == 0 and "complete -o default -F _vlground_completion vlground" in res.output
    env = {"_VLGROUND_COMPLETE": "complete_bash", "COMP_WORDS": "vlground de", "COMP_CWORD": "1"}
    res = runner.invoke(app, [], prog_name="vlground", env=env)
    assert res.output.split() == ["detect"]


def test_every_option_name_is_whole_at_80_columns():
    """In a pipe or a default terminal (80 columns) no option name is cut (rich tables cut them)."""
    import typer

    for path in _command_paths():
        res = runner.invoke(app, [*path, "-h"], terminal_width=80)
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]
        names = [opt for param in command.params for opt in (*param.opts, *param.secondary_opts)
                 if opt.startswith("-") and not getattr(param, "hidden", False)]
        if not hasattr(command, "commands"):
            assert "--verbose" in res.output, path  # every command takes it
        for name in names:
            assert re.search(rf"(^|[\s,/]){re.escape(name)}([\s,=]|$)", res.output, re.M), (path, name)
        assert "…" not in res.output and max(map(len, res.output.splitlines())) <= 80, path
        assert len(res.output.splitlines()) <= 60, (path, "help longer than one screen")  # rare options grouped, details in docs/


def test_every_batch_command_takes_the_shared_flags_declared_once():
    """detect, label, ocr and the bench commands list the batch and model flags from cli/flags.py, as one
    group each; bench's folder always resumes, so it has no --resume."""
    import typer

    from vlground.cli.flags import BATCH, DECODING, LOADING

    shared = {f"--{flag.name.replace('_', '-')}" for group in (BATCH, LOADING, DECODING) for flag in group.parameters()}
    assert {"--quiet", "--resume", "--retry-failed", "--overwrite", "--ray", "--workers", "--batch-size"} <= shared
    root = typer.main.get_command(app)
    for path, left_off in [(["detect"], set()), (["label"], set()), (["ocr"], {"--min-pixels", "--served-model"}),
                           (["bench", "refcoco"], {"--resume", "--served-model"}),
                           (["bench", "screenspot"], {"--resume", "--served-model"})]:
        command = root
        for name in path:
            command = command.commands[name]
        names = {opt for param in command.params for opt in param.opts}
        assert shared - names == left_off, path


def test_a_command_gets_the_flags_as_one_object(tmp_path):
    import typer

    from vlground.cli.flags import BATCH, DECODING, with_flags

    seen = {}

    @with_flags
    def command(name: str, run=BATCH.but(resume=None), generation=DECODING) -> None:
        seen.update(name=name, run=run, generation=generation)

    app = typer.Typer()
    app.command()(command)  # the one command: no command name on its line
    res = runner.invoke(app, ["x", "--overwrite", "-q", "--batch-size", "3", "--thinking", "off"])
    assert res.exit_code == 0, res.output
    assert seen["name"] == "x" and seen["generation"].batch_size == 3 and seen["generation"].thinking == "off"
    assert seen["run"].overwrite and not seen["run"].resume and seen["run"].quiet and seen["run"].progress is False
    runner.invoke(app, ["y"])
    assert seen["run"].resume  # resume=None: resumes unless --overwrite
    res = runner.invoke(app, ["y", "--resume"])
    assert res.exit_code == 2 and "--resume" in res.output  # left off this command's line
    res = runner.invoke(app, ["y", "--workers", "2", "--gpus-per-worker", "1"])
    assert res.exit_code == 2 and "--gpus-per-worker applies with --ray" in res.output
