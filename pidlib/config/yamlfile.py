"""Strict YAML for profiles: duplicate keys are errors; every error names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["read_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (YAML's own rule,
    which PyYAML does not enforce: it keeps the last value silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue  # `<<: *anchor` may be overridden by the keys after it
                key = self.construct_object(key_node, deep=True)
                try:
                    line = first.setdefault(key, key_node.start_mark.line)
                except TypeError:
                    continue  # an unhashable key: PyYAML's own error follows
                if line != key_node.start_mark.line:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {line + 1})",
                        key_node.start_mark,
                    )  # fmt: skip
        return super().construct_mapping(node, deep)


def _where(path: Path, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = f", line {mark.line + 1}" if mark is not None else ""
    what = " ".join(str(p) for p in (getattr(err, "context", None), getattr(err, "problem", None))
                    if p) or str(err)  # fmt: skip
    return f"profile {path}{line}: {what}"


def read_yaml(path: str | Path) -> tuple[Any, dict[str, int]]:
    """``(document, {top-level key: line})`` of a YAML file (lines count from 1; an empty file
    is ``None``). A syntax error or a duplicate key raises ``ValueError`` naming the file and
    the line."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            loader = _StrictLoader(f)  # reads the start of the file: may raise already
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as err:
            raise ValueError(_where(path, err)) from None
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                lines.setdefault(str(key_node.value), key_node.start_mark.line + 1)
    return data, lines
