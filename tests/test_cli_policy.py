"""The CLI's shared policy: exit codes (one table, the README's), usage errors, help text, batch reports.

Usage errors are checked on every subcommand without running any model: Click rejects the option
before the command starts, or the command rejects it before any work.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli import errors
from dynast_cli.cli.app import EXAMPLES, NOTES, app, run
from dynast_cli.errors import EXIT_CODES, EXIT_USAGE
from dynast_cli.memory import MemoryBudgetError, MemorySizeError, parse_memory

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # and terminal_width: CliRunner forces 80 columns otherwise


def _commands(group=None, prefix=()):
    """(path, click command) of every subcommand, e.g. (("train", "style"), <DynastCommand>)."""
    group = group if group is not None else typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


COMMANDS = sorted(" ".join(path) for path, _ in _commands())


def _lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


# --- one table of exit codes --------------------------------------------------------------------


def _readme_exit_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*exit code\s*\|\s*meaning\s*\|", line))
    assert re.match(r"\|[-:\s|]+\|$", lines[start + 1]), "the header of the exit-code table has no separator row"
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        code, meaning = [cell.strip() for cell in line.strip().strip("|").split("|")]
        table[int(code)] = meaning
    return table


def test_the_readme_exit_code_table_is_the_code_table():
    assert _readme_exit_codes() == EXIT_CODES
    assert errors.exit_code_table() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_exit_code_table_is_complete_and_the_errors_use_it():
    assert set(EXIT_CODES) == {0, 1, 2, 3, 4, 5, 6, 70, 130}
    assert all("|" not in meaning and "\n" not in meaning for meaning in EXIT_CODES.values())
    assert errors.DynastError.exit_code == errors.EXIT_USAGE == 1
    assert errors.InputError.exit_code == 2 and errors.WeightsError.exit_code == 3
    assert errors.OutputError.exit_code == 4 and errors.BatchError.exit_code == 5
    assert MemoryBudgetError.exit_code == 6 and MemorySizeError.exit_code == EXIT_USAGE


# --- usage errors: exit 1, the usage line and one error line, no traceback -----------------------

#: A bad option value for every subcommand: out of range, malformed, or a value given to a flag.
BAD_VALUES = {
    "style": (["style", "c.png", "s.png", "--alpha", "2"], "--alpha"),
    "video": (["video", "in.mp4", "s.png", "--batch", "0"], "--batch"),
    "pose": (["pose", "ref.png", "target.json", "--fps", "0"], "--fps"),
    "face": (["face", "exemplar.png", "edges.png", "--max-memory", "abc"], "--max-memory"),
    "bench": (["bench", "--repeat", "0"], "--repeat"),
    "fetch": (["fetch", "vgg19"], "NETWORK"),
    "convert adaattn": (["convert", "adaattn", "ckpt", "--overwrite=yes"], "--overwrite"),
    "convert stya2k": (["convert", "stya2k", "ckpt", "--overwrite=yes"], "--overwrite"),
    "convert dynast": (["convert", "dynast", "G.pth", "-o", "g.safetensors", "--top-k", "0"], "--top-k"),
    "train style": (["train", "style", "--content", "c", "--style", "s", "--steps", "0"], "--steps"),
    "train face": (["train", "face", "--faces", "f", "--batch", "many"], "--batch"),
    "train pose": (["train", "pose", "--pairs", "p", "--images", "i", "--poses", "q", "--lr", "fast"], "--lr"),
    "eval style": (["eval", "style", "--content", "c", "--style", "s", "--size", "8"], "--size"),
    "eval video": (["eval", "video", "in.mp4", "s.png", "--max-frames", "1"], "--max-frames"),
}


def _assert_usage_error(result, mentions: str = "") -> None:
    assert result.exit_code == EXIT_USAGE, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = _lines(result)
    errors_shown = [line for line in lines if line.lower().startswith("error")]
    assert len(errors_shown) == 1 and lines[-1] == errors_shown[0] and lines[-1].startswith("error: "), lines
    assert mentions in lines[-1]
    assert all(line.startswith(("Usage: ", " ")) for line in lines[:-1]), lines  # at most the usage line


def test_every_subcommand_has_a_bad_value_case():
    assert sorted(BAD_VALUES) == COMMANDS


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_bad_option_value_is_a_usage_error(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, mentions = BAD_VALUES[name]
    _assert_usage_error(runner.invoke(app, args), mentions)


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_option_is_a_usage_error(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*name.split(), "--no-such-option"])
    _assert_usage_error(result, "--no-such-option")
    assert _lines(result)[0].startswith(f"Usage: dynast {name} [OPTIONS]")


@pytest.mark.parametrize("command", ["style", "video", "pose", "face"])
def test_a_malformed_max_memory_is_a_usage_error_not_a_budget_error(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [command, "a.png", "b.png", "--max-memory", "abc"])
    assert result.exit_code == EXIT_USAGE
    assert _lines(result) == ["error: --max-memory takes a size like 4G, 500M or 1.5GB, got 'abc'"]


@pytest.mark.parametrize("text", ["abc", "0", "100K"])
def test_parse_memory_raises_a_usage_error_that_is_still_a_budget_error(text):
    with pytest.raises(MemorySizeError) as info:
        parse_memory(text)
    assert isinstance(info.value, MemoryBudgetError) and info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("args, mentions", [
    (["style"], "Missing argument 'CONTENT'"),
    (["style", "c.png"], "Missing argument 'STYLES"),
    (["stlye"], "No such command 'stlye'"),
    (["train", "decoder"], "No such command 'decoder'"),
    (["--no-such-option"], "--no-such-option"),
    (["eval", "video", "in.mp4", "s.png", "--flow", "magic"], "--flow"),  # typer.BadParameter from the command
    (["train", "style", "--content", "c", "--style", "s", "--size", "4096"], "--size"),  # it used up 24 GB
])
def test_click_usage_errors_exit_1(args, mentions, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _assert_usage_error(runner.invoke(app, args), mentions)


#: Option values the command itself rejects (errors.UsageError, not Click): exit 1, like Click's usage
#: errors, not 2 (a bad input file). Each is refused before any file is read or model built; the files
#: named are c.png and s.png (written by the test) or do not exist.
OPTION_VALUE_ERRORS = {
    "train style --size": (["train", "style", "--content", "c", "--style", "s", "--size", "100"], "--size"),
    "train style --precision": (["train", "style", "--content", "c", "--style", "s", "--precision", "fp8"],
                                "--precision"),
    "train style --video-weight": (["train", "style", "--content", "c", "--style", "s", "--video-weight", "1"],
                                   "--video-weight"),
    "train style --video --content-weight": (["train", "style", "--content", "c", "--style", "s", "--method",
                                              "adaattn", "--video", "--content-weight", "1"], "--content-weight"),
    "train style --video --method": (["train", "style", "--content", "c", "--style", "s", "--video"], "--video"),
    "train style --locality": (["train", "style", "--content", "c", "--style", "s", "--method", "dynast",
                                "--locality", "0.5,2"], "--locality"),
    "train style --method": (["train", "style", "--content", "c", "--style", "s", "--method", "nope"], "--method"),
    "train style --init": (["train", "style", "--content", "c", "--style", "s", "--init", "a.safetensors"],
                           "--init"),
    "train style --content-weight": (["train", "style", "--content", "c", "--style", "s", "--content-weight", "1"],
                                     "--content-weight"),
    "train face --size": (["train", "face", "--faces", "f", "--size", "100"], "--size"),
    "train face --config": (["train", "face", "--faces", "f", "--config", "huge"], "--config"),
    "train pose --config": (["train", "pose", "--pairs", "p", "--images", "i", "--poses", "q", "--config", "huge"],
                            "--config"),
    "eval style --methods": (["eval", "style", "--content", "c.png", "--style", "s.png", "--methods", ","],
                             "--methods"),
    "eval style --methods unknown": (["eval", "style", "--content", "c.png", "--style", "s.png", "--methods",
                                      "nope"], "style method 'nope'"),
    "eval style --alphas range": (["eval", "style", "--content", "c.png", "--style", "s.png", "--alphas", "2"],
                                  "--alphas"),
    "eval style --alphas text": (["eval", "style", "--content", "c.png", "--style", "s.png", "--alphas", "a,b"],
                                 "--alphas"),
    "style --method": (["style", "c.png", "s.png", "-m", "nope"], "style method 'nope'"),
    "face --edges": (["face", "c.png", "s.png", "--edges", "sobel"], "--edges"),
    "convert adaattn": (["convert", "adaattn"], "--transformer"),
}


@pytest.mark.parametrize("name", sorted(OPTION_VALUE_ERRORS))
def test_an_option_value_the_command_rejects_is_a_usage_error(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for file, shade in (("c.png", 60), ("s.png", 180)):
        Image.new("RGB", (64, 48), (shade, 90, 30)).save(file)
    args, mentions = OPTION_VALUE_ERRORS[name]
    result = runner.invoke(app, args)
    _assert_usage_error(result, mentions)
    assert _lines(result) == [_lines(result)[-1]]  # only the error line: the command ran and refused the value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "s.png"]  # nothing written


@pytest.mark.parametrize("args", [[], ["train"], ["convert"]])
def test_a_group_without_a_command_shows_its_help_and_exits_1(args):
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_USAGE and "Commands:" in result.output and "Traceback" not in result.output


def test_the_console_script_gives_the_same_codes(capsys):
    with pytest.raises(SystemExit) as info:
        run(["style", "c.png", "s.png", "--alpha", "2"])
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: Invalid value for '-a' / '--alpha'")
    with pytest.raises(SystemExit) as info:
        run(["style", "c.png", "s.png", "--max-memory", "abc"])
    assert info.value.code == EXIT_USAGE


# --- help ---------------------------------------------------------------------------------------


def _help(name: str, width: int = 200) -> str:
    result = runner.invoke(app, [*name.split(), "--help"], env=WIDE, terminal_width=width)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_subcommand_has_examples_and_no_stale_ones():
    assert sorted(EXAMPLES) == COMMANDS
    assert set(NOTES) <= set(EXAMPLES)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_examples_plain_flags_and_upper_case_arguments(name):
    text = _help(name)
    assert "Examples:" in text and f"dynast {name}" in text.split("Examples:")[1]
    assert "<bool>" not in text and "{" not in text and "}" not in text
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: dynast {name} [OPTIONS]")
    assert usage == usage.replace(usage.split("[OPTIONS]")[1], usage.split("[OPTIONS]")[1].upper())


def test_help_shows_brackets_as_written():
    face = _help("face")
    assert "pip install 'dynast-cli[mediapipe]'" in face
    assert "--overwrite " in face and "--overwrite <" not in face


@pytest.mark.parametrize("name", ["face", "pose"])
def test_a_narrow_help_does_not_break_words_at_hyphens(name):
    text = _help(name, width=60)
    assert "'dynast-cli[mediapipe]'" in text and "dynast-\n" not in text


def test_style_usage_line():
    assert _help("style").splitlines()[0] == "Usage: dynast style [OPTIONS] CONTENT STYLES..."
    assert _help("fetch").splitlines()[0] == "Usage: dynast fetch [OPTIONS] [NETWORK]"


def test_pose_help_says_when_mediapipe_is_needed():
    text = " ".join(_help("pose").split())
    assert "A photo as REFERENCE or TARGET_POSE needs MediaPipe: pip install 'dynast-cli[mediapipe]'" in text
    assert "--reference-pose FILE" in text


def test_bench_help_says_the_default_is_the_full_suite_and_how_to_run_less():
    text = " ".join(_help("bench").split())
    assert "With no options, dynast bench runs the full suite" in text and "several minutes" in text
    assert "dynast bench --kernels adaattn,inter --sizes 32 --repeat 3" in text


def _resolve(tokens: list[str]):
    """The click command of ``dynast <tokens>`` and the remaining arguments."""
    cmd = typer.main.get_command(app)
    while hasattr(cmd, "commands"):
        cmd, tokens = cmd.commands[tokens[0]], tokens[1:]
    return cmd, tokens


@pytest.mark.parametrize("name", COMMANDS)
def test_the_examples_parse(name):
    """Every example names real options with valid values (parsed by the command, not run)."""
    for _, line in EXAMPLES[name]:
        tokens = shlex.split(line)
        assert tokens[0] == "dynast"
        cmd, args = _resolve(tokens[1:])
        cmd.make_context(tokens[1], args)  # raises a usage error on an unknown option or a bad value


# --- a batch with a failure lists what it wrote -------------------------------------------------


def test_a_batch_that_exits_5_lists_the_files_it_wrote(stand_ins, image_file, tmp_path):
    folder = tmp_path / "contents"
    image_file(24, 40, "contents/a1.png")
    image_file(30, 30, "contents/a2.jpg", seed=3)
    (folder / "a10.png").write_bytes(b"broken")
    style = image_file(32, 32, "s.png")
    out_dir = tmp_path / "outs"
    result = runner.invoke(app, ["style", str(folder), str(style), "-o", str(out_dir), "-m", "adain"])
    assert result.exit_code == errors.EXIT_BATCH
    lines = _lines(result)
    assert lines[:2] == [f"wrote {out_dir / 'a1.png'}", f"wrote {out_dir / 'a2.png'}"]
    assert len(lines) == 3 and lines[2].startswith("error: 1 of 3 file(s) failed: ") and "a10.png" in lines[2]
    assert sorted(p.name for p in out_dir.iterdir()) == ["a1.png", "a2.png"]
    assert Image.open(out_dir / "a1.png").size == (40, 24)


def test_batch_error_carries_the_written_files():
    class Report:
        written = [Path("a.png")]

    assert errors.BatchError("x", written=["b.png"]).written == [Path("b.png")]
    error = errors.BatchError("1 of 2 file(s) failed")
    assert error.written == []
    error.report = Report()
    assert error.written == [Path("a.png")]


@pytest.mark.parametrize("command", [["train", "style"], ["train", "face"], ["train", "pose"]])
@pytest.mark.parametrize("lr", ["-1", "0", "nan", "inf"])
def test_a_learning_rate_that_is_not_above_0_is_a_usage_error(command, lr):
    """--lr -1 trained face and pose models (exit 0) and stopped train style with an internal error (70)."""
    res = CliRunner().invoke(app, [*command, "--lr", lr])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: Invalid value for '--lr': must be a number above 0, got {float(lr):g} "
                      f"(see 'dynast {' '.join(command)} -h')"]


def test_debug_after_the_subcommand_is_taken_too(tmp_path, monkeypatch, capsys):
    """`dynast style --debug ...` said "No such option: --debug"; the flag now works on either side, the exit
    code stays the error's own, and a `--debug` after `--` is left alone (an argument)."""
    import sys

    app_module = sys.modules["dynast_cli.cli.app"]  # the module (dynast_cli.cli.app is also the Typer app's name)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(app_module._state, "debug", False)
    for args in (["style", "--debug", "nope.png", "s.png"], ["--debug", "style", "nope.png", "s.png"]):
        with pytest.raises(SystemExit) as info:
            run(args)
        err = capsys.readouterr().err
        assert info.value.code == 2 and "Traceback (most recent call last)" in err
        assert err.strip().splitlines()[-1] == "error: nope.png: no such file"
        app_module._state["debug"] = False
    with pytest.raises(SystemExit) as info:
        run(["style", "nope.png", "s.png"])
    assert info.value.code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["style", "video"])
@pytest.mark.parametrize("alpha", ["nan", "inf", "-0.5", "1.5"])
def test_a_strength_outside_0_to_1_is_a_usage_error_that_says_so(command, alpha):
    """--alpha nan was refused as "should be less than or equal to 1" (a range check sees no number in nan)."""
    res = CliRunner().invoke(app, [command, "c.png", "s.png", "--alpha", alpha])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: Invalid value for '-a' / '--alpha': must be a number from 0 to 1, got {float(alpha):g} "
                      f"(see 'dynast {command} -h')"]


@pytest.mark.parametrize("method", ["a2k", "adain"])
def test_attention_for_a_method_without_it_is_a_usage_error(method, tmp_path, monkeypatch):
    """``video -m a2k --attention cosine`` was accepted and ignored; without the option a2k still runs
    (its help: dynast and adaattn only)."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["video", "c.mp4", "s.png", "-m", method, "--attention", "cosine"])
    assert res.exit_code == 1, res.output
    assert f"--attention applies to adaattn and dynast only, not to --method {method}" in res.output
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fps", ["inf", "nan", "1e9", "0.5"])
def test_a_frame_rate_outside_1_to_1000_is_a_usage_error(fps):
    """--fps inf hung in OpenCV's writer (Ctrl-C did not stop it); 1e9 failed as "cannot write this format"."""
    res = CliRunner().invoke(app, ["pose", "ref.png", "poses", "-o", "x.mp4", "--fps", fps])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: Invalid value for '--fps': must be a number from 1 to 1000, got {float(fps):g} "
                      "(see 'dynast pose -h')"]


@pytest.mark.parametrize("flag", [["--train-decoder"], ["--locality", "0.5,0.5,0.5"]])
def test_dynast_only_training_options_with_another_method_are_a_usage_error(flag):
    """They were accepted with --method adaattn/decoder and silently ignored."""
    res = CliRunner().invoke(app, ["train", "style", "--content", "c", "--style", "s", "--method", "adaattn", *flag])
    assert res.exit_code == 1, res.output
    assert f"error: {flag[0]} applies to --method dynast only, not 'adaattn'" in res.output


def test_eval_video_refuses_an_attention_for_a_method_without_one(tmp_path, monkeypatch):
    """``eval video --methods adain:cosine`` ran adain and ignored the attention."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["eval", "video", "c.mp4", "s.png", "--methods", "adain:cosine"])
    assert res.exit_code == 1, res.output
    assert "--attention applies to adaattn and dynast only, not to --method adain" in res.output
    assert sorted(tmp_path.iterdir()) == []
