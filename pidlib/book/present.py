"""How a chapter reads in the book: code one click away, parameters once, nothing from stderr.

The chapter runner applies these to every chapter, so the chapters' sources carry no
presentation boilerplate; a cell's own myst-nb tag always wins.

- :func:`collapse_code`: every code cell whose tags do not already decide how its code shows
  gets ``hide-input``: its outputs (tables, Markdown, figures) show, its code sits behind a
  "Show code" toggle. Tag a cell ``show-input`` to show its code, or use a myst-nb tag
  (``remove-input``, ``remove-cell``, ``hide-cell``); ``remove-output`` hides only the output.
- :func:`fold_parameters`: papermill's ``injected-parameters`` cell is folded into the
  ``parameters`` cell, which then shows once, collapsed, as "Parameters of this build".
- :func:`stderr_lines` / :func:`drop_stderr`: what a chapter wrote to stderr (warnings; progress
  bars stay on a terminal) is reported on the console by the build and left out of the copy the
  book publishes. The rendered pages also drop it through ``nb_output_stderr: remove``.
- :func:`relative_paths`: papermill's record of input and output paths, relative to the
  repository root, so the published notebook names no directory of the build machine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # notebooks as nbformat reads them (attribute access); no import at run time
    from nbformat import NotebookNode

__all__ = [
    "PROGRESS_BAR",
    "PRESENTATION_TAGS",
    "PARAMETERS_PROMPT",
    "collapse_code",
    "fold_parameters",
    "stderr_lines",
    "drop_stderr",
    "relative_paths",
    "present",
]

#: myst-nb tags that already decide how a cell's code shows (plus ``show-input``: show it).
PRESENTATION_TAGS = frozenset(
    {
        "hide-input",
        "hide-cell",
        "remove-input",
        "remove_input",
        "remove-cell",
        "remove_cell",
        "show-input",
    }
)
#: A line of a tqdm progress bar ("ChooseAttr:  45%|####5     | 81/180 [00:03<00:04, ...]").
PROGRESS_BAR = re.compile(r"\d{1,3}%\|[^|\n]*\||\b\d+/\d+ \[\d+:\d\d[<\]]")
#: The toggle of the folded parameters cell.
PARAMETERS_PROMPT = "Parameters of this build"


def _tags(cell: NotebookNode) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def collapse_code(nb: NotebookNode) -> NotebookNode:
    """Tag every code cell that has no presentation tag ``hide-input`` (in place)."""
    for cell in nb.cells:
        if cell.cell_type == "code" and not PRESENTATION_TAGS & set(_tags(cell)):
            _tags(cell).append("hide-input")
    return nb


def fold_parameters(nb: NotebookNode) -> NotebookNode:
    """One collapsed "Parameters of this build" cell: the chapter's defaults followed by the
    values papermill injected (their assignments run after the defaults, as they did), in place.
    """
    cells = nb.cells
    params = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    injected = [c for c in cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    target = params or (injected[0] if injected else None)
    if target is None:
        return nb
    if params is not None and injected:
        lines = [
            ln
            for c in injected
            for ln in c.source.splitlines()
            if ln.strip() and ln.strip() != "# Parameters"
        ]
        params.source = (
            "# This chapter's defaults\n"
            + params.source.rstrip()
            + "\n\n# Set by this build (papermill)\n"
            + "\n".join(lines)
        )
        params.outputs = params.get("outputs", []) + [o for c in injected for o in c.outputs]
        nb.cells = [c for c in cells if not any(c is i for i in injected)]
    tags = [t for t in _tags(target) if t not in PRESENTATION_TAGS]
    target.metadata["tags"] = [*tags, "hide-input"]
    target.metadata["mystnb"] = {
        **target.metadata.get("mystnb", {}),
        "code_prompt_show": PARAMETERS_PROMPT,
        "code_prompt_hide": f"Hide the {PARAMETERS_PROMPT[0].lower()}{PARAMETERS_PROMPT[1:]}",
    }
    return nb


def stderr_lines(nb: NotebookNode) -> list[str]:
    """Every line a chapter's cells wrote to stderr, as ``cell <n>: <line>`` (n from 1)."""
    out = []
    for i, cell in enumerate(nb.cells, 1):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                out += [f"cell {i}: {ln}" for ln in o.get("text", "").splitlines() if ln.strip()]
    return out


def drop_stderr(nb: NotebookNode) -> NotebookNode:
    """Remove stderr stream outputs (in place)."""
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [
                o
                for o in cell.outputs
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    return nb


def _relative(value, prefix: str):
    """``value`` (an output's text, data or list of lines) with ``prefix`` removed."""
    if isinstance(value, str):
        return value.replace(prefix, "")
    if isinstance(value, list):
        return [_relative(v, prefix) for v in value]
    if isinstance(value, dict):
        return type(value)({k: _relative(v, prefix) for k, v in value.items()})
    return value


def relative_paths(nb: NotebookNode, root: Path) -> NotebookNode:
    """papermill's ``input_path`` / ``output_path``, and any path in an output under ``root``
    (``PosixPath('<root>/build/...')``), relative to ``root`` (in place)."""
    record = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        value = record.get(key)
        if value and Path(value).is_absolute():
            try:
                record[key] = str(Path(value).relative_to(root))
            except ValueError:
                record[key] = Path(value).name
    prefix = f"{str(root).rstrip('/')}/"
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [_relative(o, prefix) for o in cell.outputs]
    return nb


def present(nb: NotebookNode, root: Path) -> NotebookNode:
    """The copy of an executed chapter the book publishes: parameters folded, code collapsed,
    no stderr, relative paths (in place)."""
    return relative_paths(drop_stderr(collapse_code(fold_parameters(nb))), root)
