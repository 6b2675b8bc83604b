"""Every command, every kind of wrong input: the exit code, one ``error:`` line, no traceback.

Exit codes (docs/cli.md): 2 for a usage error (unknown option, wrong type, bad value,
missing file, an existing file where a directory is wanted), 1 for bad data or a bad
saved model (the message names the file, its 1-based line and the column).

The unknown-option and --help checks walk the real command tree, so a command added
later is swept too; the other kinds are listed per command below.
"""

from __future__ import annotations

import typing

import pytest
import typer

from llmrec import cli
from llmrec.datasets import make_synthetic


def _commands():
    group = typer.main.get_command(cli.app)

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, path + (name,))
        else:
            yield path
    return list(walk(group, ()))


ALL_COMMANDS = _commands()


def call(capsys, *args):
    """Run ``llmrec ARGS`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    return e.value.code, capsys.readouterr().err


def assert_one_error_line(err: str, fragment: str = ""):
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("[llmrec]")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], (fragment, err)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    rec = make_synthetic(60, 3, n_topics=2, seed=0)
    rec.to_long(with_text=True).to_csv(d / "ok.csv", index=False)
    (d / "bad.csv").write_text("prompt_id,llm,score,text\np1,a,1,hi\np2,a,high,yo\n")
    (d / "a_file").write_text("not a directory\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "fit", "--data", str(d / "ok.csv"), "--router", "best-single",
                  "--out", str(d / "model")])
    assert e.value.code == 0
    return d


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_unknown_option_exits_2_naming_it(capsys, path):
    code, err = call(capsys, *path, "--no-such-option", "1")
    assert code == 2
    assert_one_error_line(err, "--no-such-option")


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_help_lists_examples(capsys, path):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main([*path, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Examples" in out and f"llmrec {' '.join(path)}" in out


def test_misspelt_option_suggests_the_right_one(capsys, env):
    code, err = call(capsys, "fit", "--data", env / "ok.csv", "--router", "knn",
                     "--outt", env / "x")
    assert code == 2
    assert_one_error_line(err, "--out")


# (args, expected exit code, fragment of the error line)
CASES = {
    "missing file": [
        (("data", "info", "{d}/none.csv"), 2, "none.csv"),
        (("data", "convert", "{d}/none.csv", "{d}/o.csv"), 2, "none.csv"),
        (("encode", "{d}/none.csv", "--out", "{d}/e.npy"), 2, "none.csv"),
        (("split", "--data", "{d}/none.csv", "--out", "{d}/sp"), 2, "none.csv"),
        (("fit", "--data", "{d}/none.csv", "--router", "knn", "--out", "{d}/m2"), 2,
         "none.csv"),
        (("fit", "--data", "{d}/ok.csv", "--router", "knn", "--encoder",
          "precomputed:{d}/none.npy", "--out", "{d}/m2"), 2, "none.npy"),
        (("recommend", "--model", "{d}/nomodel", "hi"), 2, "nomodel"),
        (("recommend", "--model", "{d}/model", "--input", "{d}/none.jsonl"), 2, "none.jsonl"),
        (("evaluate", "--model", "{d}/nomodel", "--data", "{d}/ok.csv"), 2, "nomodel"),
        (("evaluate", "--model", "{d}/model", "--data", "{d}/none.csv"), 2, "none.csv"),
        (("bench", "--data", "{d}/none.csv", "--routers", "best-single", "--out", "{d}/b"), 2,
         "none.csv"),
        (("serve", "--model", "{d}/nomodel"), 2, "nomodel"),
        (("evaluate", "--model", "{d}/model", "--logs", "{d}/none.jsonl"), 2, "none.jsonl"),
        (("refit", "--logs", "{d}/nologs", "--warm-start", "{d}/model", "--out", "{d}/m3"), 2,
         "nologs"),
        (("refit", "--logs", "{d}/nologs", "--warm-start", "{d}/nomodel", "--out", "{d}/m3"),
         2, "nomodel"),
    ],
    "wrong type": [
        (("recommend", "--model", "{d}/model", "-k", "abc", "hi"), 2, "'-k'"),
        (("recommend", "--model", "{d}/model", "--cost-weight", "much", "hi"), 2,
         "--cost-weight"),
        (("fit", "--data", "{d}/ok.csv", "--router", "knn", "--param", "k=abc",
          "--out", "{d}/m2"), 2, "k expects an integer"),
        (("fit", "--data", "{d}/ok.csv", "--router", "knn", "--encoder-param", "dim=abc",
          "--out", "{d}/m2"), 2, "dim expects an integer"),
        (("fit", "--data", "{d}/ok.csv", "--router", "knn", "--param", "kk=5",
          "--out", "{d}/m2"), 2, "did you mean 'k'"),
        (("fit", "--data", "{d}/ok.csv", "--router", "knnn", "--out", "{d}/m2"), 2,
         "did you mean 'knn'"),
        (("fit", "--data", "{d}/ok.csv", "--router", "knn", "--encoder", "minlm",
          "--out", "{d}/m2"), 2, "did you mean 'minilm'"),
        (("fit", "--data", "{d}/ok.csv", "--router", "knn", "--side-feature", "categroy",
          "--out", "{d}/m2"), 2, "did you mean 'category'"),
        (("fit", "--data", "{d}/ok.csv", "--router", "knn", "--on-duplicate", "avg",
          "--out", "{d}/m2"), 2, "--on-duplicate"),
        (("bench", "--seeds", "two"), 2, "--seeds"),
        (("bench", "--protocol", "cold-promt", "--out", "{d}/b"), 2,
         "did you mean 'cold-prompt'"),
        (("bench", "--routers", "knn", "--param", "knn:k=x", "--out", "{d}/b"), 2,
         "k expects an integer"),
        (("bench", "--sizes", "3,x", "--out", "{d}/b"), 2, "--sizes"),
        (("demo", "--n-prompts", "many"), 2, "--n-prompts"),
        (("split", "--data", "{d}/ok.csv", "--seed", "x", "--out", "{d}/sp"), 2, "--seed"),
        (("split", "--data", "{d}/ok.csv", "--protocol", "cold", "--out", "{d}/sp"), 2,
         "--protocol"),
        (("serve", "--model", "{d}/model", "--port", "http"), 2, "--port"),
        (("serve", "--model", "{d}/model", "--long-prompts", "cut"), 2, "--long-prompts"),
        (("serve", "--model", "{d}/model", "--policy", "epsilon-greedy:eps=2"), 2,
         "eps must be in [0, 1]"),
        (("evaluate", "--model", "{d}/model", "--logs", "{d}", "--level", "high"), 2,
         "--level"),
        (("refit", "--logs", "{d}", "--warm-start", "{d}/model", "--out", "{d}/m3",
          "--clip", "x"), 2, "--clip"),
        (("data", "convert", "{d}/ok.csv", "{d}/o.csv", "--to", "excel"), 2, "--to 'excel'"),
        (("encode", "{d}/ok.csv", "--out", "{d}/e.npy", "--encoder-param", "dimm=3"), 2,
         "did you mean 'dim'"),
    ],
    "file where a directory is wanted": [
        (("fit", "--data", "{d}/ok.csv", "--router", "best-single", "--out", "{d}/a_file"), 2,
         "a_file"),
        (("split", "--data", "{d}/ok.csv", "--out", "{d}/a_file"), 2, "a_file"),
        (("bench", "--routers", "best-single", "--out", "{d}/a_file"), 2, "a_file"),
        (("demo", "--out", "{d}/a_file"), 2, "a_file"),
        (("recommend", "--model", "{d}/a_file", "hi"), 2, "a_file"),
        (("evaluate", "--model", "{d}/a_file", "--data", "{d}/ok.csv"), 2, "a_file"),
        (("data", "convert", "{d}/ok.csv", "{d}/a_file", "--to", "records"), 2, "a_file"),
        (("encode", "{d}/ok.csv", "--out", "{d}"), 2, "is a directory"),
        (("cache", "info", "--cache-dir", "{d}/a_file"), 2, "a_file"),
        (("cache", "clear", "--cache-dir", "{d}/a_file"), 2, "a_file"),
    ],
    "bad data": [
        (("data", "info", "{d}/bad.csv"), 1, "bad.csv, line 3, column 'score': score 'high'"),
        (("fit", "--data", "{d}/bad.csv", "--router", "best-single", "--out", "{d}/m2"), 1,
         "line 3"),
        (("evaluate", "--model", "{d}/model", "--data", "{d}/bad.csv"), 1, "line 3"),
        (("split", "--data", "{d}/bad.csv", "--out", "{d}/sp"), 1, "line 3"),
    ],
}


@pytest.mark.parametrize("kind, args, code, fragment",
                         [(k, *c) for k, cases in CASES.items() for c in cases],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_wrong_input(capsys, env, kind, args, code, fragment):
    got, err = call(capsys, *[a.format(d=env) for a in args])
    assert got == code, (kind, args, err)
    assert_one_error_line(err, fragment.format(d=env))


#: the commands CASES covers; any other command (added later) is still swept by the
#: automatic checks above and below (unknown option, --help, wrong types)
CASED = [("data", "info"), ("data", "convert"), ("encode",), ("split",), ("fit",),
         ("recommend",), ("evaluate",), ("bench",), ("demo",), ("serve",),
         ("cache", "info"), ("cache", "clear")]


def test_cases_cover_the_commands_they_name():
    swept = {tuple(a for a in args[:2] if not a.startswith(("-", "{")))
             for cases in CASES.values() for args, _, _ in cases}
    swept = {s[:1] if s[0] not in ("data", "cache") else s for s in swept}
    assert set(CASED) <= swept
    assert set(CASED) <= set(ALL_COMMANDS)


def _typed_options():
    """(command path, option, type name) of every int / float option of every command."""
    group = typer.main.get_command(cli.app)
    out = []
    for path in ALL_COMMANDS:
        cmd = group
        for name in path:
            cmd = cmd.commands[name]
        for p in cmd.params:
            td = getattr(p, "type_descriptor", None)  # typer >= 0.2x
            ann = getattr(td, "annotation", None)
            if td is None:  # older typer on click: the click type
                ann = {"integer": int, "float": float}.get(getattr(p.type, "name", ""))
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) == 1:  # Optional[int]
                ann = args[0]
            tname = {int: "integer", float: "float"}.get(ann, "")
            opts = getattr(p, "opts", None) or []
            if opts and opts[0].startswith("--") and tname in ("integer", "float"):
                out.append((path, opts[0], tname))
    return out


@pytest.mark.parametrize("path, option, tname", _typed_options(),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else str(v))
def test_every_numeric_option_refuses_text(capsys, path, option, tname):
    code, err = call(capsys, *path, option, "abc")
    assert code == 2
    assert_one_error_line(err, option)


def test_busy_port_is_a_usage_error(capsys, env):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        code, err = call(capsys, "serve", "--model", env / "model", "--port", port)
    assert code == 2
    assert_one_error_line(err, f"--port {port}")


def test_unexpected_error_exits_1_and_debug_shows_traceback(capsys, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "load_data", boom)
    code, err = call(capsys, "data", "info", "synthetic")
    assert code == 1
    assert_one_error_line(err, "unexpected RuntimeError: a bug")
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "data", "info", "synthetic"])
