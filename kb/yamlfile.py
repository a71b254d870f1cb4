"""Reading YAML files for import: UTF-8 text, safe YAML whose dates stay text, and errors that name the file and
line. Used by page files (kb.transfer) and tour files (kb.tours), so that neither has to import the other.

Front matter and tours are a few KB of plain data, so the YAML read here has no anchors or aliases (`&name`,
`*name`: a kilobyte of nested aliases expands to gigabytes, the "billion laughs") and is capped in size
(`MAX_YAML_BYTES`); files are capped too (`read_text(..., limit=)`), and only that much of a file is ever read.
Both checks look at the text or its parse events only, so they take microseconds whatever the file holds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kb.errors import ImportFailed

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader(_BaseLoader):
    """Safe YAML where dates stay text: our fields validate them and can then name the file and line."""


Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

MAX_YAML_BYTES = 256 * 1024  # front matter or a tour file: plain data, a few KB in practice


def _key_lines(node: Any, first_line: int) -> dict[str, int]:
    """Line numbers (1-based, in the file) of top-level keys and of `fields.<name>` keys."""
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key, value in node.value:
        name = getattr(key, "value", None)
        if not isinstance(name, str):
            continue
        lines[name] = key.start_mark.line + first_line
        if name == "fields" and isinstance(value, yaml.MappingNode):
            for k2, _ in value.value:
                if isinstance(getattr(k2, "value", None), str):
                    lines[f"fields.{k2.value}"] = k2.start_mark.line + first_line
    return lines


def read_text(path: Path, where: str, limit: int | None = None) -> str:
    """A file's text; ImportFailed for a file over `limit` bytes (only that much is read) or one not in UTF-8."""
    with path.open("rb") as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ImportFailed(f"{where}:1", f"is too large (more than {limit // 1024} KiB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ImportFailed(f"{where}:{line}", f"is not UTF-8 text (bad byte at offset {e.start})") from None


def load_yaml(text: str, where: str, first_line: int = 1) -> tuple[Any, dict[str, int]]:
    """Parse YAML, turning syntax errors into ImportFailed with the file and line. Refuses anchors and aliases, and
    YAML over MAX_YAML_BYTES, before anything is built from it."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise ImportFailed(f"{where}:{first_line}", f"the YAML is too large ({size // 1024} KiB; at most "
                                                    f"{MAX_YAML_BYTES // 1024} KiB)")
    try:
        _refuse_anchors(text, where, first_line)
        node = yaml.compose(text, Loader=Loader)
        data = yaml.load(text, Loader=Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = (mark.line + first_line) if mark else first_line
        problem = f"malformed YAML: {e.problem or e}"
        if e.context and e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line:
            problem += f" ({e.context} that starts on line {e.context_mark.line + first_line})"
        raise ImportFailed(f"{where}:{line}", problem) from None
    except yaml.YAMLError as e:
        raise ImportFailed(where, f"malformed YAML: {e}") from None
    return data, _key_lines(node, first_line)


def _refuse_anchors(text: str, where: str, first_line: int) -> None:
    """ImportFailed at the first anchor (`&name`) or alias (`*name`), from the parser's events: nothing is composed
    or built, so a document of nested aliases is refused as fast as it is read."""
    for event in yaml.parse(text, Loader=Loader):
        alias = isinstance(event, yaml.AliasEvent)
        if alias or getattr(event, "anchor", None) is not None:
            line = event.start_mark.line + first_line
            what = f"alias *{event.anchor}" if alias else f"anchor &{event.anchor}"
            raise ImportFailed(f"{where}:{line}", f"YAML anchors and aliases are not allowed (found the {what}); "
                                                  "write the value out in full")
