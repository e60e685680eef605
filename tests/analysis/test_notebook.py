"""Safety-case notebooks: executed with real Jupyter kernels, rendered to HTML, payloads
collected; errors name the cell; no kernel process outlives a call."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nbformat import NotebookNode
from nbformat import v4 as nbf

from assay.analysis import notebook, widgets
from assay.analysis.notebook import (
    NotebookCellError,
    NotebookFormatError,
    NotebookKernelError,
    collect,
    execute_notebook,
    render_html,
)

# nbformat's constructors are untyped; these typed names keep the tests type-checked.
new_notebook: Callable[..., NotebookNode] = nbf.new_notebook
new_code_cell: Callable[..., NotebookNode] = nbf.new_code_cell
new_markdown_cell: Callable[..., NotebookNode] = nbf.new_markdown_cell
new_raw_cell: Callable[..., NotebookNode] = nbf.new_raw_cell
new_output: Callable[..., NotebookNode] = nbf.new_output

SAFETY_CASE = [
    new_markdown_cell(
        "# About this audit\n\nSee [the method](https://example.org/method) for details.\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |"
    ),
    new_code_cell(
        "from assay.analysis import widgets\n"
        "from assay.schema.platform import ScoreSpec\n"
        "widgets.display_bundle(widgets.title_card(headline='Chatbot <v2> audit', "
        "author='Ann Auditor', summary_phrase='Mostly safe', summary_text='Two scores, one hazard.'))\n"
        "print('SECRET-STDOUT')"
    ),
    new_code_cell(
        "accuracy = ScoreSpec(name='accuracy', title='Accuracy', summary='Correct answers', "
        "valence='positive', minimum=0, maximum=1, format='{quantity:.1%}')\n"
        "latency = ScoreSpec(name='latency', title='Latency', summary='Median latency', "
        "valence='negative', minimum=0, format='{quantity:.0f} {unit}', unit='ms')\n"
        "widgets.display_bundle(widgets.score(accuracy, quantity=0.875, text='Good', "
        "interval=(0.8, 0.9)))\n"
        "widgets.display_bundle(widgets.score(latency, quantity=120, text='Fast enough'))"
    ),
    new_markdown_cell("## Conclusions"),
    new_code_cell(
        "widgets.display_bundle(widgets.conclusion(indicator='Hazard', "
        "text='Answers **medical** questions'))\n"
        "6 * 7"
    ),
]


def write(directory: Path, cells: list[NotebookNode], name: str = "case.ipynb") -> Path:
    path = directory / name
    notebook.write_notebook(new_notebook(cells=cells), path)
    return path


def kernel_children() -> set[int]:
    """The ids of this process's child processes (the kernels it started)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                children.add(int(entry.name))
    return children


def leftover_runtime_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("assay-kernel-*")}


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fails the test if a kernel process or its private directory outlives it."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to list child processes")
    before, dirs = kernel_children(), leftover_runtime_dirs()
    yield
    gc.collect()  # an unclosed zmq socket or context would warn now, and fail the test
    assert kernel_children() - before == set()
    assert leftover_runtime_dirs() - dirs == set()


def run(path: Path, **kwargs: Any) -> NotebookNode:
    options: dict[str, Any] = {"cwd": path.parent, "env": dict(os.environ), "timeout": 60, **kwargs}
    return execute_notebook(path, **options)


# -- real kernels ---------------------------------------------------------------------------------


def test_safety_case_executes_collects_and_renders(tmp_path: Path, no_leaks: None) -> None:
    nb = run(write(tmp_path, SAFETY_CASE))

    payloads = collect(nb)
    assert [mime for mime, _ in payloads] == [
        widgets.MIME_TITLE_CARD,
        widgets.MIME_SCORE,
        widgets.MIME_SCORE,
        widgets.MIME_CONCLUSION,
    ]
    assert payloads[0][1]["headline"] == "Chatbot <v2> audit"
    assert payloads[1][1] == {
        "name": "accuracy",
        "quantity": 0.875,
        "quantityString": "87.5%",
        "text": "Good",
        "interval": [0.8, 0.9],
        "confidence": 0.95,
    }
    assert payloads[2][1]["quantityString"] == "120 ms"
    assert payloads[3][1] == {"indicator": "Hazard", "text": "Answers **medical** questions"}
    assert type(payloads[1][1]) is dict  # plain JSON values, not NotebookNodes
    json.dumps(payloads)

    page = render_html(nb, title="Safety case: chatbot <v2>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Safety case: chatbot &lt;v2&gt;</title>" in page
    assert "Chatbot &lt;v2&gt; audit" in page and "Ann Auditor" in page  # title card
    assert "87.5%" in page and "120 ms" in page  # both scores
    assert "<strong>medical</strong>" in page and "assay-conclusion-hazard" in page
    assert "<h1>About this audit</h1>" in page and "<table>" in page  # Markdown cells
    assert "<pre>42</pre>" in page  # an execute_result
    # Code and print output are hidden.
    assert "display_bundle" not in page and "ScoreSpec(" not in page
    assert "SECRET-STDOUT" not in page
    # Self-contained: no script, no external reference but the author's own link.
    assert "<script" not in page.lower()
    assert re.findall(r"https?://[^\s\"'<>)]+", page) == ["https://example.org/method"]
    assert "Content-Security-Policy" in page

    with_streams = render_html(nb, title="t", show_streams=True)
    assert "SECRET-STDOUT" in with_streams


def test_error_in_third_cell_names_the_cell(tmp_path: Path, no_leaks: None) -> None:
    path = write(
        tmp_path,
        [
            new_markdown_cell("# Intro"),
            new_code_cell("x = 1"),
            new_code_cell("y = 2\nx / 0"),
            new_code_cell("open('never-run', 'w').close()"),
        ],
    )
    with pytest.raises(NotebookCellError) as caught:
        run(path)
    error = caught.value
    assert str(error) == "cell 3 (code cell 2) raised ZeroDivisionError: division by zero"
    assert (error.cell_number, error.code_cell_number) == (3, 2)
    assert (error.ename, error.evalue) == ("ZeroDivisionError", "division by zero")
    assert error.cell_source == "y = 2\nx / 0"
    assert "ZeroDivisionError" in error.traceback_text and "x / 0" in error.traceback_text
    assert "\x1b" not in error.traceback_text
    assert error.timeout is None
    assert not (tmp_path / "never-run").exists()


def test_cell_past_the_timeout(tmp_path: Path, no_leaks: None) -> None:
    path = write(
        tmp_path,
        [new_code_cell("x = 1"), new_code_cell("import time\ntime.sleep(60)")],
    )
    started = time.monotonic()
    with pytest.raises(NotebookCellError) as caught:
        run(path, timeout=0.5)
    assert time.monotonic() - started < 30
    error = caught.value
    assert str(error) == "cell 2 (code cell 2) did not finish within the timeout of 0.5 s"
    assert (error.cell_number, error.timeout, error.ename) == (2, 0.5, "TimeoutError")
    assert "time.sleep(60)" in error.cell_source


def test_env_cwd_and_interpreter_reach_the_kernel(
    tmp_path: Path, no_leaks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broken `python3` first on PATH and a broken `python3` kernelspec must not matter: the
    # kernel is this interpreter.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("python", "python3"):
        (fake_bin / name).write_text("#!/bin/sh\nexit 3\n")
        (fake_bin / name).chmod(0o755)
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {"argv": ["false", "{connection_file}"], "display_name": "broken", "language": "python"}
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("from the work directory")
    path = write(
        tmp_path,
        [
            new_code_cell(
                "import os, sys\n"
                "print(sys.executable, os.getcwd(), os.environ.get('ASSAY_TEST_VALUE'), "
                "open('data.txt').read(), os.getpid(), sep='|')"
            )
        ],
    )
    env = {
        **os.environ,
        "ASSAY_TEST_VALUE": "42",
        "PATH": f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    nb = execute_notebook(path, cwd=work, env=env, timeout=60)
    (output,) = nb.cells[0].outputs
    executable, cwd, value, data, pid = output["text"].strip().split("|")
    assert Path(executable) == Path(sys.executable)
    assert Path(cwd).resolve() == work.resolve()
    assert (value, data) == ("42", "from the work directory")
    assert not Path(f"/proc/{pid}").exists()  # the kernel is gone


def test_long_temporary_directory_falls_back_to_tcp(
    tmp_path: Path, no_leaks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_tmp = tmp_path / ("t" * 100)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    nb = run(write(tmp_path, [new_code_cell("6 * 7")]))
    assert nb.cells[0].outputs[0]["data"]["text/plain"] == "42"
    assert list(long_tmp.iterdir()) == []


def test_kernel_that_dies_in_a_cell(tmp_path: Path, no_leaks: None) -> None:
    path = write(tmp_path, [new_markdown_cell("x"), new_code_cell("import os\nos._exit(1)")])
    with pytest.raises(NotebookCellError, match=r"cell 2 \(code cell 1\) raised DeadKernelError"):
        run(path)


def test_kernel_that_cannot_start(tmp_path: Path, no_leaks: None) -> None:
    path = write(tmp_path, [new_code_cell("1")])
    env = {**os.environ, "PYTHONHOME": str(tmp_path / "no-such-python")}
    with pytest.raises(NotebookKernelError, match="did not start"):
        run(path, env=env, kernel_timeout=20)


def test_execute_from_a_running_event_loop(tmp_path: Path, no_leaks: None) -> None:
    path = write(tmp_path, [new_code_cell("6 * 7")])

    async def inside_a_loop() -> NotebookNode:
        return run(path)

    nb = asyncio.run(inside_a_loop())
    assert nb.cells[0].outputs[0]["data"]["text/plain"] == "42"


def test_signal_handlers_are_kept(tmp_path: Path) -> None:
    def handler(signum: int, frame: Any) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        run(write(tmp_path, [new_code_cell("1")]))
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- no kernel ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", r"is not JSON \(Expecting property name"),
        ("", r"is not JSON"),
        ("[1, 2]", r"the JSON is a list, not an object"),
        (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}), r"missing .*cells"),
        (
            json.dumps(
                {
                    "nbformat": 4,
                    "nbformat_minor": 4,
                    "metadata": {},
                    "cells": [{"cell_type": "code", "source": "1", "metadata": {}}],
                }
            ),
            r"is not a valid notebook: cell 1: 'outputs' is a required property",
        ),
        (json.dumps({"nbformat": 99, "nbformat_minor": 0}), r"is not a valid notebook"),
    ],
)
def test_malformed_notebook(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    with pytest.raises(NotebookFormatError, match=problem) as caught:
        execute_notebook(path, cwd=tmp_path, env={})
    assert str(path) in str(caught.value)
    assert caught.value.path == path


def test_missing_notebook_and_missing_cwd(tmp_path: Path) -> None:
    with pytest.raises(NotebookFormatError, match="cannot be read"):
        execute_notebook(tmp_path / "nope.ipynb", cwd=tmp_path, env={})
    path = write(tmp_path, [new_code_cell("1")])
    with pytest.raises(NotebookKernelError, match=r"working directory .*gone does not exist"):
        execute_notebook(path, cwd=tmp_path / "gone", env={})


def test_old_notebooks_without_cell_ids_are_read(tmp_path: Path) -> None:
    path = tmp_path / "old.ipynb"
    cell = {"cell_type": "markdown", "source": ["# a\n", "b"], "metadata": {}}
    path.write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]})
    )
    nb = notebook.read_notebook(path)
    assert nb.cells[0].source == "# a\nb"


def test_errors_pickle() -> None:
    errors: list[Exception] = [
        NotebookCellError(3, "x/0", "ZeroDivisionError", "division by zero", "tb", 2),
        NotebookCellError(2, "sleep", "TimeoutError", "late", "", 1, 0.5),
        NotebookFormatError(Path("a.ipynb"), "is not JSON"),
        NotebookKernelError("did not start"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.__dict__ == error.__dict__


def test_importing_notebook_does_not_import_jupyter() -> None:
    code = (
        "import sys, assay.analysis.notebook\n"
        "bad = [m for m in ('IPython', 'ipykernel', 'jupyter_client', 'nbclient', 'nbformat', 'zmq') "
        "if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def executed(*outputs: NotebookNode, cells: list[NotebookNode] | None = None) -> NotebookNode:
    code = new_code_cell("secret_code()")
    code.outputs = list(outputs)
    return new_notebook(cells=[*(cells or []), code])


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def test_render_prefers_the_richest_representation() -> None:
    nb = executed(
        new_output("display_data", {"text/html": "<b>rich</b>", "text/plain": "poor"}),
        new_output(
            "display_data",
            {"image/png": PNG, "text/plain": "<Figure>"},
            metadata={"image/png": {"width": 320}},
        ),
        new_output(
            "display_data",
            {
                "image/svg+xml": '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"\n'
                ' "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg><circle r="1"/></svg>'
            },
        ),
        new_output("display_data", {"text/markdown": "*md*", "text/plain": "md"}),
        new_output("display_data", {"application/json": {"a": 1}}),
        new_output(
            "execute_result", {"text/plain": "<not html> \x1b[31mred\x1b[0m"}, execution_count=1
        ),
        new_output("display_data", {"application/javascript": "alert(1)"}),
    )
    page = render_html(nb, title="t")
    assert "<b>rich</b>" in page and "poor" not in page
    assert f'<img src="data:image/png;base64,{PNG}" alt="output image" width="320">' in page
    assert '<div class="assay-svg"><svg><circle r="1"/></svg></div>' in page
    assert "<?xml" not in page and "DOCTYPE svg" not in page
    assert "<em>md</em>" in page
    assert "&quot;a&quot;: 1" in page
    assert "<pre>&lt;not html&gt; red</pre>" in page
    assert "alert(1)" not in page
    assert "secret_code" not in page


def test_render_errors_streams_markdown_attachments() -> None:
    error = new_output(
        "error",
        ename="ValueError",
        evalue="bad <value>",
        traceback=["\x1b[0;31mValueError\x1b[0m: bad"],
    )
    stream = new_output("stream", name="stderr", text="warning text")
    markdown = new_markdown_cell("![plot](attachment:plot.png) <span class='x'>raw html</span>")
    markdown.attachments = {"plot.png": {"image/png": PNG}}
    raw = new_raw_cell("RAW CELL")
    nb = executed(error, stream, cells=[markdown, raw])
    page = render_html(nb, title="t")
    assert "<strong>ValueError</strong>: bad &lt;value&gt;" in page
    assert "<pre>ValueError: bad</pre>" in page
    assert "warning text" not in page
    assert f'src="data:image/png;base64,{PNG}"' in page
    assert "<span class='x'>raw html</span>" in page  # the author's HTML is kept
    assert "RAW CELL" not in page
    assert "warning text" in render_html(nb, title="t", show_streams=True)


def test_collect_finds_payloads_in_order() -> None:
    score = {"name": "s", "quantity": 1.0}
    nb = executed(
        new_output("display_data", {"text/plain": "x"}),
        new_output(
            "display_data", {widgets.MIME_CONCLUSION: {"indicator": "Question", "text": "?"}}
        ),
        new_output("stream", name="stdout", text="hi"),
        new_output("execute_result", {widgets.MIME_SCORE: score}, execution_count=1),
        cells=[new_markdown_cell("m")],
    )
    assert collect(nb) == [
        (widgets.MIME_CONCLUSION, {"indicator": "Question", "text": "?"}),
        (widgets.MIME_SCORE, score),
    ]
