"""The documentation is executed: every fenced ```bash and ```python block of README.md
and docs/**/*.md runs, so a documented command cannot drift from the code.

Conventions (also in docs/README.md):

* ```bash blocks run with ``bash -euo pipefail`` and ```python blocks run as Python, in
  order, in one fresh temporary directory per page (a later block may use what an
  earlier one wrote, e.g. a fitted model). ``llmrec`` on PATH is this checkout's.
  ``$LLMREC_SHARED_DATA`` points at the real data (../shared/data by default).
* ``<!-- doc-test: skip (reason) -->`` on the line before a fence skips that block
  (a long-running server, a real endpoint); keep such blocks rare.
* ```text (and other labels: json, csv, ...) is never run; every fence must have a label,
  so an illustrative block is marked as such explicitly.
* A block that names a real dataset is skipped when the real data is absent (a failure
  under CI=true, as for the ``shared_data`` fixture).

A failure names the page, the block's first line number, the block and its output.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))
RUN_LANGS = {"bash", "python"}
SKIP_RE = re.compile(r"<!--\s*doc-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
#: names that need ../shared/data
REAL_DATA_RE = re.compile(r"mmlu-pro|routerdc|routerbench|routellm|llmrouter|embedllm|"
                          r"mt-bench|routereval:|LLMREC_SHARED_DATA")
#: seconds one block may run
BLOCK_TIMEOUT = 180


@dataclass
class Block:
    page: Path
    line: int          # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None   # reason, when marked

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def parse_blocks(page: Path) -> list[Block]:
    """Every fenced block of a markdown page (nested fences are not used in our docs)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group("fence"), m.group("info").lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].lstrip().startswith(fence):
            j += 1
        code = textwrap.dedent("\n".join(lines[i + 1:j]))
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        sm = SKIP_RE.search(lines[k]) if k >= 0 else None
        out.append(Block(page, start + 1, info, code + "\n",
                         sm.group("reason") if sm else None))
        i = j + 1
    return out


def _llmrec_shim(bin_dir: Path) -> None:
    """``llmrec`` on PATH = ``python -m llmrec`` of this checkout (not another install)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "llmrec"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m llmrec "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "PATH": f"{tmp / '.bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                f"{env.get('PATH', '')}",
        "PYTHONPATH": f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep),
        "LLMREC_SHARED_DATA": str(shared_data_dir()),
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg", "LLMREC_API_KEY": "", "COLUMNS": "100",
    })
    env.setdefault("LLMREC_CACHE", str(tmp / ".cache"))
    return env


class _Timeout(Exception):
    pass


def _run_python(block: Block, ns: dict, tmp: Path) -> None:
    def alarm(signum, frame):
        raise _Timeout(f"still running after {BLOCK_TIMEOUT} s")

    old_cwd = os.getcwd()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(BLOCK_TIMEOUT)
    try:
        os.chdir(tmp)
        exec(compile(block.code, f"{block.where} (python block)", "exec"), ns)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(old_cwd)


def _run_bash(block: Block, env: dict, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT)


def _report(block: Block, detail: str) -> str:
    code = textwrap.indent(block.code.rstrip(), "    ")
    return (f"documented {block.lang} block at {block.where} failed:\n{code}\n"
            f"--- output ---\n{detail[-4000:]}")


def test_every_fence_has_a_label():
    unlabelled = [b.where for p in PAGES for b in parse_blocks(p) if not b.lang]
    assert not unlabelled, (
        "fences without a label (use ```bash or ```python to have them run, ```text for "
        f"output or illustration): {unlabelled}")


def test_skip_markers_give_a_reason():
    for p in PAGES:
        for ln, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if "doc-test:" in line:
                assert SKIP_RE.search(line), f"{p.relative_to(REPO)}:{ln}: malformed marker"


@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.lang in RUN_LANGS for b in parse_blocks(p))], ids=lambda p: str(p.relative_to(REPO)))
def test_documented_blocks_run(page, tmp_path, monkeypatch):
    have_data = (shared_data_dir() / "README.md").is_file()
    under_ci = os.environ.get("CI", "").lower() == "true"
    env = _env(tmp_path)
    _llmrec_shim(tmp_path / ".bin")
    for k in ("LLMREC_SHARED_DATA", "LLMREC_CACHE", "OMP_NUM_THREADS", "MPLBACKEND"):
        monkeypatch.setenv(k, env[k])
    ns: dict = {"__name__": "__doc_test__"}
    ran = skipped = 0
    for block in parse_blocks(page):
        if block.lang not in RUN_LANGS:
            continue
        if block.skip:
            skipped += 1
            continue
        if REAL_DATA_RE.search(block.code) and not have_data:
            if under_ci:
                pytest.fail(f"{block.where} needs the real data ({shared_data_dir()}), "
                            "absent under CI")
            skipped += 1
            continue
        if block.lang == "bash":
            try:
                p = _run_bash(block, env, tmp_path)
            except subprocess.TimeoutExpired:
                pytest.fail(_report(block, f"timed out after {BLOCK_TIMEOUT} s"))
            if p.returncode != 0:
                pytest.fail(_report(block, f"exit code {p.returncode}\n{p.stdout}{p.stderr}"))
        else:
            try:
                _run_python(block, ns, tmp_path)
            except BaseException as e:  # noqa: BLE001 - report any failure of the block
                import traceback
                pytest.fail(_report(block, "".join(traceback.format_exception(e))))
        ran += 1
    assert ran or skipped


def test_cli_reference_matches_help():
    """docs/cli.md's command reference is the real --help of every command."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import cli_docs
    finally:
        sys.path.pop(0)
    msgs = cli_docs.drift()
    assert not msgs, ("docs/cli.md drifted from the CLI (update it with "
                      "`python tools/cli_docs.py --write`):\n" + "\n\n".join(msgs))


def test_cli_reference_check_names_the_drifted_command(monkeypatch):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import cli_docs
    finally:
        sys.path.pop(0)
    real = cli_docs.render()
    monkeypatch.setattr(cli_docs, "current", lambda: real.replace("number of seeds",
                                                                  "count of seeds"))
    msgs = cli_docs.drift()
    assert len(msgs) == 1 and msgs[0].startswith("`llmrec bench --help` differs")
    # re-wrapping is not drift
    monkeypatch.setattr(cli_docs, "current", lambda: real.replace("number of seeds",
                                                                  "number of\n    seeds"))
    assert cli_docs.drift() == []
