"""``headsurgeon diagnose`` as a user runs it: a separate process, real exit codes and stderr.

Every bad input of issue 2 must end in exit code 2 and exactly one stderr line ``error: ...``
naming the problem, with no traceback. Each case runs in a process of its own (see ``FRESH``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from forked_cli import run_cli

BAD_INPUT = {
    # case: (argv after `diagnose` with {placeholders}, expected words in the error line)
    "missing-model-path": (["--model", "{tmp}/no/such/model"], "does not exist"),
    "unsupported-architecture": (["--model", "{opt}"], "'opt' is not supported"),
    "empty-prompt-file": (["--model", "{llama}", "--prompts", "{empty}"], "holds no prompts"),
    "unreadable-prompt-file": (["--model", "{llama}", "--prompts", "{binary}"], "cannot read prompt file"),
    "prompt-too-short": (["--model", "{llama}", "--prompts", "{short}", "--bos", "none"], "at least 2 tokens"),
    "thresholds-out-of-order": (["--model", "{llama}", "--sink-threshold", "0.9", "--dead-threshold", "0.5"], "thresholds out of order"),
    "unwritable-output-dir": (["--model", "{llama}", "--out", "{file}/sub"], "cannot write to output directory"),
    "unknown-dtype": (["--model", "{llama}", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    "unknown-device": (["--model", "{llama}", "--device", "tpu"], "unknown device 'tpu'"),
}
HAPPY = ["--model", "{llama}", "--prompts", "{good}", "--out", "{tmp}/out"]


def _inputs(tmp, tiny_factory, opt_saver) -> dict[str, str]:
    llama = tiny_factory("llama-gqa")
    (tmp / "llama").mkdir()
    llama.model.save_pretrained(tmp / "llama")
    llama.tokenizer.save_pretrained(tmp / "llama")
    opt_saver(tmp / "opt")
    (tmp / "empty.txt").write_text("\n\n  \n")
    (tmp / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81")
    (tmp / "short.txt").write_text("A prompt that is long enough.\n\nx\n")
    (tmp / "good.txt").write_text("The harbour was quiet before dawn.\n\nfor i in range(3):\n    print(i)\n")
    (tmp / "a-file").write_text("a regular file, not a folder")
    return {
        "tmp": str(tmp), "llama": str(tmp / "llama"), "opt": str(tmp / "opt"), "empty": str(tmp / "empty.txt"),
        "binary": str(tmp / "binary.txt"), "short": str(tmp / "short.txt"), "good": str(tmp / "good.txt"),
        "file": str(tmp / "a-file"),
    }


#: Cases run as a user runs them, in a fresh ``python -m headsurgeon.cli.main`` interpreter; the
#: others run in processes forked from the test process (``tests/forked_cli.py``: own exit code
#: and stderr, without paying the torch/transformers import once per case).
FRESH = ("happy",)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, tiny_factory, opt_saver):
    """Every case in a process of its own; the ``FRESH`` ones start first and run alongside."""
    tmp = tmp_path_factory.mktemp("cli")
    values = _inputs(tmp, tiny_factory, opt_saver)
    env = {"PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    cases = {}
    for name, (argv, _) in BAD_INPUT.items():
        cases[name] = [a.format(**values) for a in argv] + ["--no-progress"]
        if "--out" not in argv:
            cases[name] += ["--out", f"{tmp}/out-{name}"]
    cases["happy"] = [a.format(**values) for a in HAPPY]  # with progress bars, as a user runs it

    fresh = {name: subprocess.Popen([sys.executable, "-m", "headsurgeon.cli.main", "diagnose", *cases[name]], cwd=tmp,
                                    env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in FRESH}
    results = {}
    for name in cases:
        if name not in FRESH:
            p = run_cli(["diagnose", *cases[name]], env=env, cwd=tmp)
            results[name] = (p.returncode, p.stdout, p.stderr)
    for name, p in fresh.items():
        out, err = p.communicate()  # no timeout: how long it takes depends on the machine
        results[name] = (p.returncode, out, err)
    return results, tmp


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gives_one_error_line(cli_runs, case):
    results, _ = cli_runs
    code, out, err = results[case]
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and BAD_INPUT[case][1] in lines[0], lines[0]
    assert len(lines[0]) < 400


def test_happy_path_writes_json_and_figures(cli_runs):
    results, tmp = cli_runs
    code, out, err = results["happy"]
    assert code == 0, err
    assert "Traceback" not in err
    assert "Head classes" in out and "healthy" in out and "wrote" in out
    assert "query 0 excluded" in " ".join(out.split()) and "'<bos>' x2" in out  # says what position 0 is
    folder = tmp / "out"
    doc = json.loads((folder / "diagnosis.json").read_text())
    assert doc["kind"] == "diagnosis" and doc["model"]["name"] == "llama"
    assert len(doc["prompts"]) == 2 and doc["prompts"][0]["first_token"] == "<bos>"
    assert sum(doc["summary"]["counts"].values()) == 2 * 4
    for png in ("heatmap.png", "histogram.png"):
        data = (folder / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_no_output_written_on_bad_input(cli_runs):
    results, tmp = cli_runs
    assert not (tmp / "out-thresholds-out-of-order" / "diagnosis.json").exists()
    assert not (tmp / "out-prompt-too-short" / "diagnosis.json").exists()


def test_help_lists_the_options(capsys):
    """In-process: the app wires the diagnose subcommand and documents its thresholds."""
    from headsurgeon.cli.main import run

    assert run(["diagnose", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--model", "--prompts", "--bos", "--sink-threshold", "--dead-threshold"):
        assert option in out, option


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--prompts", "{tmp}/nope.txt"], "does not exist"),
        (["--bos", "always"], "--bos must be one of"),
        (["--batch-size", "0"], "--batch-size must be a whole number >= 1"),
        (["--low-entropy-threshold", "-1"], "--low-entropy-threshold must be a finite number >= 0"),
    ],
)
def test_more_bad_input_in_process(saved_tiny, tmp_path, capsys, argv, expected):
    """Further user errors through the same entry point, in-process (cheaper than a process each)."""
    from headsurgeon.cli.main import run

    argv = [a.format(tmp=tmp_path) for a in argv]
    model = str(saved_tiny("bloom"))
    capsys.readouterr()  # drop the fixture's save_pretrained progress output
    code = run(["diagnose", "--model", model, "--out", str(tmp_path / "out"), "--no-progress", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
