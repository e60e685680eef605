"""Safety-case notebooks: run them with a real Jupyter kernel, render them as one HTML page, and
collect what their widgets published.

- :func:`execute_notebook` reads a notebook and runs every cell in an IPython kernel started
  with *this* interpreter (``sys.executable -m ipykernel_launcher``), whatever kernelspecs or
  ``python3`` are on the machine, over Unix-socket (IPC) transport in a private temporary
  directory: no TCP port is opened and nothing is written to the Jupyter runtime directory.
- :func:`render_html` turns the executed notebook into one self-contained HTML document: code
  hidden, Markdown rendered, outputs shown, no external resource.
- :func:`collect` returns the machine-readable payloads of the widgets
  (:mod:`assay.analysis.widgets`) in display order.

Errors:

```
NotebookError
 ├── NotebookFormatError   the file cannot be read, is not JSON, or is not a valid notebook
 ├── NotebookCellError     a cell raised an exception, ran past its timeout or killed the kernel
 └── NotebookKernelError   the kernel could not be started
```

Jupyter (nbformat, nbclient, jupyter_client) is imported inside the functions, so importing
this module is cheap.

Rendering decisions:

- Raw HTML in Markdown cells and ``text/html`` outputs are passed through: the notebook's author
  is trusted as much as its code, which runs on the platform and can display any HTML anyway.
  What protects a reader is the document's Content-Security-Policy (:data:`CONTENT_SECURITY_POLICY`):
  no script runs and nothing is fetched, so the report stays self-contained; images must be
  embedded (``image/png`` outputs, Markdown attachments), not linked.
- Stream output (``print``) is hidden unless ``show_streams=True``; errors are shown.
- Raw cells are left out; LaTeX outputs are shown as source (rendering needs MathJax, a script).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import html
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from markdown_it import MarkdownIt

from assay.analysis.widgets import MIME_TYPES, WIDGET_CSS

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpecManager
    from markdown_it.renderer import RendererHTML
    from markdown_it.token import Token
    from markdown_it.utils import EnvType, OptionsDict
    from nbformat import NotebookNode

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "NotebookCellError",
    "NotebookError",
    "NotebookFormatError",
    "NotebookKernelError",
    "collect",
    "execute_notebook",
    "read_notebook",
    "render_html",
    "write_notebook",
]

_T = TypeVar("_T")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


# -- errors ---------------------------------------------------------------------------------------


class NotebookError(Exception):
    """Base class of the errors of reading and running a notebook."""


class NotebookFormatError(NotebookError):
    """The notebook at :attr:`path` cannot be read or is not a valid Jupyter notebook;
    :attr:`problem` says what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"notebook {path} {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.problem)


class NotebookCellError(NotebookError):
    """A cell failed: it raised an exception, ran past the timeout, or the kernel died while it
    ran.

    :attr:`cell_number` counts all cells of the notebook from 1 (Markdown cells included), as
    a reader sees them; :attr:`code_cell_number` counts code cells only. :attr:`ename` and
    :attr:`evalue` are the exception's type name and message (``TimeoutError`` for a timeout,
    ``DeadKernelError`` for a dead kernel); :attr:`traceback_text` is its traceback without
    terminal colour codes; :attr:`timeout` is set (in seconds) when the cell timed out.
    :attr:`notebook` is the notebook as far as it ran (the outputs of the cells that ran, the
    failing cell's error output), set by :func:`execute_notebook`; :meth:`report` is the
    failure as a log shows it.
    """

    def __init__(
        self,
        cell_number: int,
        cell_source: str,
        ename: str,
        evalue: str,
        traceback_text: str,
        code_cell_number: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.cell_number = cell_number
        self.cell_source = cell_source
        self.ename = ename
        self.evalue = evalue
        self.traceback_text = traceback_text
        self.code_cell_number = code_cell_number
        self.timeout = timeout
        self.notebook: NotebookNode | None = None
        cell = f"cell {cell_number}"
        if code_cell_number is not None:
            cell += f" (code cell {code_cell_number})"
        if timeout is not None:
            message = f"{cell} did not finish within the timeout of {timeout:g} s"
        elif evalue:
            message = f"{cell} raised {ename}: {evalue}"
        else:
            message = f"{cell} raised {ename}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (
            self.cell_number,
            self.cell_source,
            self.ename,
            self.evalue,
            self.traceback_text,
            self.code_cell_number,
            self.timeout,
        )

    def report(self, *, excerpt_lines: int = 20) -> str:
        """The failure for a log: what the cell raised, the cell's source (numbered; its
        first ``excerpt_lines`` lines) and the traceback (IPython's, colour codes removed)."""
        source = self.cell_source.splitlines() or [""]
        width = len(str(min(len(source), excerpt_lines)))
        parts = [str(self), f"  source of cell {self.cell_number}:"]
        parts += [f"    {i:>{width}} | {line}" for i, line in enumerate(source[:excerpt_lines], 1)]
        if len(source) > excerpt_lines:
            parts.append(f"    ... ({len(source) - excerpt_lines} more lines)")
        if self.traceback_text.strip():
            parts.append("  traceback:")
            parts += [f"    {line}" for line in self.traceback_text.rstrip().splitlines()]
        return "\n".join(parts)


class NotebookKernelError(NotebookError):
    """The Jupyter kernel could not be started (or failed outside any cell)."""


# -- reading and executing ------------------------------------------------------------------------


def read_notebook(path: Path) -> NotebookNode:
    """Read and validate the notebook at ``path`` (any nbformat version, converted to 4).

    Raises :class:`NotebookFormatError` if the file cannot be read, is not JSON or does not
    follow the notebook format.
    """
    import nbformat
    from nbformat.warnings import MissingIDFieldWarning

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookFormatError(path, f"cannot be read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookFormatError(
            path, f"is not JSON ({exc}); save it again from Jupyter"
        ) from None
    if not isinstance(data, dict):
        raise NotebookFormatError(
            path, f"is not a notebook: the JSON is a {type(data).__name__}, not an object"
        )
    captured: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            # nbformat adds the cell ids that older notebooks lack, and says so; harmless.
            warnings.simplefilter("ignore", MissingIDFieldWarning)
            nb: NotebookNode = nbformat.reads(  # type: ignore[no-untyped-call]
                text, as_version=4, capture_validation_error=captured
            )
    except nbformat.ValidationError as exc:
        raise NotebookFormatError(path, f"is not a valid notebook: {_describe(exc)}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NotebookFormatError(path, f"is not a valid notebook ({exc})") from None
    if "ValidationError" in captured:
        problem = _describe(captured["ValidationError"])
        raise NotebookFormatError(path, f"is not a valid notebook: {problem}")
    return nb


def write_notebook(nb: NotebookNode, path: Path) -> None:
    """Write the notebook ``nb`` (e.g. an executed one, with its outputs) to ``path``."""
    import nbformat

    nbformat.write(nb, Path(path))  # type: ignore[no-untyped-call]


def _describe(error: Any) -> str:
    """A one-line description of an nbformat (jsonschema) validation error."""
    message = str(getattr(error, "message", error)).splitlines()[0]
    where = list(getattr(error, "absolute_path", []))
    if len(where) >= 2 and where[0] == "cells" and isinstance(where[1], int):
        location = f"cell {where[1] + 1}"
        if where[2:]:
            location += " " + ".".join(map(str, where[2:]))
        return f"{location}: {message}"
    if where:
        return f"{'.'.join(map(str, where))}: {message}"
    return message


def execute_notebook(
    path: Path,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None = 600,
    kernel_timeout: float = 60,
) -> NotebookNode:
    """Run every cell of the notebook at ``path`` in a new IPython kernel and return the
    notebook with its outputs.

    The kernel runs ``sys.executable -m ipykernel_launcher`` in the directory ``cwd`` with
    exactly the environment ``env`` (pass ``{**os.environ, ...}`` to add to this process's);
    ``timeout`` is the limit in seconds for each cell (``None``: no limit) and
    ``kernel_timeout`` the limit for the kernel to start. The kernel is shut down before this
    returns or raises.

    Raises :class:`NotebookFormatError` (the file), :class:`NotebookCellError` (a cell failed
    or timed out; the cell is named; its ``notebook`` is the notebook as far as it ran) or
    :class:`NotebookKernelError` (the kernel did not start).
    """
    nb = read_notebook(path)
    cwd = Path(cwd)
    if not cwd.is_dir():
        raise NotebookKernelError(
            f"cannot run notebook {path}: the working directory {cwd} does not exist"
        )
    with _signal_handlers_kept():
        try:
            _run_coroutine(lambda: _execute(nb, cwd, dict(env), timeout, kernel_timeout))
        except NotebookCellError as exc:
            exc.notebook = nb  # nbclient fills the cells in place: the outputs so far
            raise
    return nb


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Restore this process's SIGINT and SIGTERM handlers afterwards: nbclient replaces them
    while the kernel runs (to shut it down on a signal) and leaves the defaults behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)


async def _execute(
    nb: NotebookNode, cwd: Path, env: dict[str, str], timeout: float | None, kernel_timeout: float
) -> None:
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    current: dict[str, Any] = {}  # the cell being run and, if it failed, its execute reply

    def on_cell_start(cell: NotebookNode, cell_index: int) -> None:
        current.clear()
        current["index"] = cell_index

    def on_cell_error(cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any]) -> None:
        current["reply"] = execute_reply.get("content", {})

    def cell_error(ename: str, evalue: str, traceback_text: str, **extra: Any) -> NotebookCellError:
        index: int = current["index"]
        cells = nb.cells
        code_number = sum(1 for c in cells[: index + 1] if c.cell_type == "code")
        return NotebookCellError(
            index + 1, cells[index].source, ename, evalue, traceback_text, code_number, **extra
        )

    with tempfile.TemporaryDirectory(prefix="assay-kernel-") as runtime:
        sockets: dict[str, str] = {}
        # Unix sockets in our private directory (0700): no TCP port, no eavesdropping. Their
        # paths must stay short (about 100 bytes on Linux, with a "-N" suffix), else use TCP.
        if os.name == "posix" and len(os.fsencode(runtime)) <= 90:
            sockets = {"transport": "ipc", "ip": os.path.join(runtime, "ipc")}
        manager = AsyncKernelManager(
            kernel_name="python3",  # so that nbclient keeps IPython's history in memory
            kernel_spec_manager=_kernel_spec_manager(),
            connection_file=os.path.join(runtime, "kernel.json"),
            **sockets,
        )
        client = NotebookClient(
            nb,
            km=manager,
            kernel_name="python3",
            timeout_func=lambda cell: timeout,  # nbclient's own ``timeout`` takes whole seconds
            startup_timeout=max(1, math.ceil(kernel_timeout)),
            on_cell_start=on_cell_start,
            on_cell_error=on_cell_error,
        )
        try:
            await client.async_execute(cleanup_kc=True, env=env, cwd=str(cwd))
        except CellTimeoutError as exc:
            if timeout is None:  # not the cell's limit: nbclient gave up waiting for output
                raise cell_error("TimeoutError", str(exc).splitlines()[0], "") from None
            raise cell_error(
                "TimeoutError", f"did not finish within {timeout:g} s", "", timeout=timeout
            ) from None
        except CellExecutionError as exc:
            reply = current.get("reply", {})
            traceback_text = _strip_ansi("\n".join(reply.get("traceback", [])))
            raise cell_error(
                reply.get("ename", exc.ename), reply.get("evalue", exc.evalue), traceback_text
            ) from None
        except DeadKernelError:
            if "index" not in current:
                raise NotebookKernelError("the Jupyter kernel died while starting") from None
            raise cell_error(
                "DeadKernelError",
                "the kernel died while running the cell (did it run out of memory, or exit?)",
                "",
            ) from None
        except (RuntimeError, TimeoutError, OSError) as exc:
            if "index" in current:
                raise NotebookKernelError(f"the Jupyter kernel failed: {exc}") from exc
            raise NotebookKernelError(
                f"the Jupyter kernel ({sys.executable} -m ipykernel_launcher, in {cwd}) did not "
                f"start: {exc}; its error output went to this process's standard error"
            ) from exc
        finally:
            # nbclient registers an exit handler that it forgets to remove when the kernel
            # fails to start; remove it so that the client (and its kernel) can be collected.
            atexit.unregister(client._cleanup_kernel)
            if manager.has_kernel:  # nbclient shuts it down; this is the last resort
                await manager.shutdown_kernel(now=True)


@functools.cache
def _kernel_spec_manager_class() -> type[KernelSpecManager]:
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisInterpreterKernelSpecManager(KernelSpecManager):
        """Resolves every kernel name to an IPython kernel run by this interpreter."""

        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(
                name=kernel_name,
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (Assay)",
                language="python",
                interrupt_mode="signal",
            )

    return ThisInterpreterKernelSpecManager


def _kernel_spec_manager() -> KernelSpecManager:
    return _kernel_spec_manager_class()()


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from synchronous code, in a thread of its own if this
    thread already runs an event loop (e.g. when called from a Jupyter notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="assay-notebook") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


# -- collecting payloads --------------------------------------------------------------------------


def collect(nb: NotebookNode) -> list[tuple[str, dict[str, Any]]]:
    """The payloads of the widgets (:data:`assay.analysis.widgets.MIME_TYPES`) displayed by
    the executed notebook ``nb``, as ``(mime_type, payload)`` in display order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = output.get("data", {})
            found.extend((mime, _plain(data[mime])) for mime in MIME_TYPES if mime in data)
    return found


def _plain(value: Any) -> Any:
    """``value`` with nbformat's NotebookNodes turned into plain dicts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# -- rendering ------------------------------------------------------------------------------------

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)
"""The policy in every rendered report: inline styles and ``data:`` images only; no script,
no fetch of any kind."""

_MIME_ORDER = (
    "text/html",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "image/gif",
    "text/markdown",
    "text/latex",
    "application/json",
    "text/plain",
)
_XML_PROLOGUE = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>\[]*(\[[^\]]*\])?\s*>", re.IGNORECASE)


def provenance_footer(block: Mapping[str, Any] | None, system: Mapping[str, Any]) -> str:
    """The document's footer: what it was made from — the analysis, the method, the system
    and the inputs, with ids, short digests, the time and Assay's version
    (:mod:`assay.provenance`; ``assay verify ID`` checks them)."""
    if not block:
        return ""

    def short(digest: Any) -> str:
        text = str(digest or "").removeprefix("sha256:")
        return f'<code title="sha256:{_esc(text)}">{_esc(text[:12])}</code>' if text else "—"

    rows = [
        ("Safety case", f"<code>{_esc(block.get('id', ''))}</code>"),
        (
            "Method",
            f"{_esc(block.get('method', {}).get('name', ''))} "
            f"<code>{_esc(block.get('method', {}).get('id', ''))}</code> "
            f"{short(block.get('method', {}).get('digest'))}",
        ),
    ]
    scope = block.get("scope") or {}
    for key, label in (("inferenceService", "System"), ("model", "Model"), ("dataset", "Dataset")):
        if scope.get(key):
            name = system.get(f"{key}Name")
            rows.append(
                (label, (f"{_esc(name)} " if name else "") + f"<code>{_esc(scope[key])}</code>")
            )
    for link in block.get("inputs") or []:
        rows.append(
            (
                f"Input ({_esc(link.get('kind', ''))})",
                f"<code>{_esc(link.get('id', ''))}</code> {short(link.get('digest'))}",
            )
        )
    rows.append(
        ("Made", f"{_esc(block.get('started', ''))} by Assay {_esc(block.get('assay', ''))}")
    )
    items = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    return (
        '<footer class="assay-provenance"><h2>Provenance</h2>'
        f"<dl>{items}</dl><p>Check every digest back to the data: "
        f"<code>assay verify {_esc(block.get('id', ''))}</code></p></footer>"
    )


def render_html(
    nb: NotebookNode, *, title: str, show_streams: bool = False, footer: str = ""
) -> str:
    """The executed notebook ``nb`` as one self-contained HTML document titled ``title``:
    Markdown cells rendered, code hidden, outputs shown (the richest representation of each,
    in Jupyter's usual order), ``print`` output only if ``show_streams``; ``footer`` (HTML,
    :func:`provenance_footer`) after them."""
    parts: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            env = {"attachments": _attachments(cell)}
            parts.append(
                f'<div class="assay-markdown">{_markdown().render(cell.source, env)}</div>'
            )
        elif cell.cell_type == "code":
            outputs = [_output_html(o, show_streams) for o in cell.get("outputs", [])]
            parts.extend(f'<div class="assay-output">{o}</div>' for o in outputs if o)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="generator" content="Assay">\n'
        f"<title>{_esc(title)}</title>\n"
        f"<style>{_PAGE_CSS}{WIDGET_CSS}</style>\n</head>\n<body>\n"
        f'<header class="assay-report-header">{_esc(title)}</header>\n'
        '<main class="assay-report">\n'
        + "\n".join(parts)
        + f"\n</main>\n{footer}\n</body>\n</html>\n"
    )


def _output_html(output: NotebookNode, show_streams: bool) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        if not show_streams:
            return ""
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        return f'<pre class="assay-stream assay-{name}">{_esc(_strip_ansi(_text(output.get("text"))))}</pre>'
    if kind == "error":
        traceback_text = _strip_ansi("\n".join(output.get("traceback", [])))
        return (
            '<div class="assay-error">'
            f"<p><strong>{_esc(str(output.get('ename', 'Error')))}</strong>: "
            f"{_esc(str(output.get('evalue', '')))}</p>"
            f"<pre>{_esc(traceback_text)}</pre></div>"
        )
    if kind in ("display_data", "execute_result"):
        data = output.get("data", {})
        metadata = output.get("metadata", {})
        for mime in _MIME_ORDER:
            if mime in data:
                return _data_html(mime, data[mime], metadata.get(mime, {}))
    return ""


def _data_html(mime: str, value: Any, metadata: Mapping[str, Any]) -> str:
    if mime == "text/html":
        return _text(value)
    if mime == "image/svg+xml":
        return f'<div class="assay-svg">{_XML_PROLOGUE.sub("", _text(value)).strip()}</div>'
    if mime.startswith("image/"):
        size = "".join(
            f' {k}="{int(metadata[k])}"'
            for k in ("width", "height")
            if isinstance(metadata.get(k), int | float)
        )
        data = "".join(_text(value).split())
        return f'<img src="data:{mime};base64,{_esc(data)}" alt="output image"{size}>'
    if mime == "text/markdown":
        return f'<div class="assay-markdown">{_markdown().render(_text(value))}</div>'
    if mime == "application/json":
        return f"<pre>{_esc(json.dumps(value, indent=2, default=str))}</pre>"
    return f"<pre>{_esc(_strip_ansi(_text(value)))}</pre>"


def _attachments(cell: NotebookNode) -> dict[str, str]:
    """A Markdown cell's attached images as ``data:`` URIs, by name."""
    found: dict[str, str] = {}
    for name, bundle in (cell.get("attachments") or {}).items():
        for mime in ("image/png", "image/jpeg", "image/gif", "image/svg+xml"):
            if mime in bundle:
                found[name] = f"data:{mime};base64,{''.join(_text(bundle[mime]).split())}"
                break
    return found


@functools.cache
def _markdown() -> MarkdownIt:
    """CommonMark with tables and strikethrough; raw HTML allowed (see the module's notes);
    ``attachment:`` image sources resolved from ``env["attachments"]``."""
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

    def image(
        renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        token = tokens[idx]
        src = token.attrGet("src")
        if isinstance(src, str) and src.startswith("attachment:"):
            from urllib.parse import unquote

            uri = env.get("attachments", {}).get(unquote(src.removeprefix("attachment:")))
            if uri:
                token.attrSet("src", uri)
        return renderer.image(tokens, idx, options, env)

    md.add_render_rule("image", image)
    return md


def _text(value: Any) -> str:
    """nbformat text: a string, or a list of lines in notebooks written by some tools."""
    if isinstance(value, list):
        return "".join(map(str, value))
    return value if isinstance(value, str) else str(value)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


_PAGE_CSS = """
:root { color-scheme: light; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: #fff; color: #1c2128; line-height: 1.55; font-size: 16px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  "Noto Sans", "Liberation Sans", sans-serif; }
.assay-report-header { max-width: 52rem; margin: 0 auto; padding: 1rem 1.5rem 0;
  color: #5b6470; font-size: .85rem; }
.assay-report { max-width: 52rem; margin: 0 auto; padding: .5rem 1.5rem 3rem; }
h1, h2, h3, h4 { line-height: 1.25; margin: 1.5em 0 .5em; }
h1 { font-size: 1.9rem; } h2 { font-size: 1.45rem; } h3 { font-size: 1.15rem; }
a { color: #1f4e99; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
  monospace; font-size: .875em; }
pre { background: #f6f8fa; border-radius: 6px; padding: .75rem 1rem; overflow-x: auto;
  white-space: pre-wrap; word-break: break-word; }
code { background: #f6f8fa; padding: .1em .3em; border-radius: 4px; }
pre code { background: none; padding: 0; }
blockquote { margin: 1em 0; padding: 0 1em; color: #5b6470; border-left: 4px solid #d8dce1; }
img, svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9rem; display: block;
  overflow-x: auto; }
th, td { border: 1px solid #d8dce1; padding: .35rem .6rem; text-align: left; }
thead th, table th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fafbfc; }
.assay-output { margin: .75rem 0; }
.assay-stderr { background: #fff5f5; }
.assay-error { border-left: 4px solid #c53030; background: #fdf0f0; padding: .5rem 1rem;
  border-radius: 0 6px 6px 0; }
.assay-error pre { background: transparent; padding: 0; }
.assay-provenance { max-width: 52rem; margin: 0 auto; padding: 1rem 1.5rem 2rem;
  border-top: 1px solid #d8dce1; color: #4a525c; font-size: .8rem; }
.assay-provenance h2 { font-size: .95rem; margin: .25em 0 .5em; }
.assay-provenance dl { display: grid; grid-template-columns: max-content 1fr;
  gap: .15rem 1rem; margin: 0 0 .5rem; }
.assay-provenance dt { font-weight: 600; }
.assay-provenance dd { margin: 0; overflow-wrap: anywhere; }
@media print {
  .assay-report-header { display: none; }
  .assay-report { max-width: none; padding: 0; }
  .assay-widget, .assay-output img { break-inside: avoid; }
}
"""
