"""YAML loading that remembers the line of every key and list item.

``load_yaml(path)`` returns a :class:`YamlDoc` with the plain Python data and a
map from each path (tuple of keys / indices) to its 1-based line number, so
validation errors can name the file, the line and the field. Syntax errors and
duplicate keys are reported as :class:`~eventsim.errors.ConfigError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError

Path_ = tuple


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-6`` as a float, as YAML 1.2 does (YAML 1.1,
    PyYAML's default, wants a dot: ``1.0e-6``; ``1e-6`` was a string)."""


Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                             re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                             list("-+0123456789"))


def load_scalar(text: str):
    """A YAML value on its own (a ``--set`` value), read as scenario files are."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 (Loader is a SafeLoader)


@dataclass
class YamlDoc:
    """Parsed YAML plus its line map."""

    data: object
    file: str
    lines: dict = field(default_factory=dict)

    def line(self, path) -> int | None:
        """Line of the deepest prefix of ``path`` that exists in the document."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path, message: str, hint: str | None = None) -> ConfigError:
        """A ConfigError located at ``path`` (a tuple of keys / indices)."""
        return ConfigError(
            message, file=self.file, line=self.line(path), field=dotted(path) or None, hint=hint
        )


def dotted(path) -> str:
    """('projections', 2, 'delay') -> 'projections[2].delay'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _convert(loader, node, path, lines):
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise ConfigError(
                    "mapping keys must be plain names",
                    file=loader.name, line=key_node.start_mark.line + 1, field=dotted(path),
                )
            key = str(key)
            if key in out:
                raise ConfigError(
                    f"duplicate key {key!r}", file=loader.name,
                    line=key_node.start_mark.line + 1, field=dotted((*path, key)),
                    hint="each key may appear once; remove or rename one of them",
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _convert(loader, value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_convert(loader, item, (*path, i), lines))
        return items
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse YAML text; ``file`` names it in errors."""
    loader = Loader(text)
    loader.name = file
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"YAML syntax error: {problem}", file=file, line=line,
            hint="check indentation, colons and quotes near this line",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", file=file) from None
    finally:
        loader.dispose()
    lines: dict = {(): 1}
    if root is None:
        return YamlDoc(data=None, file=file, lines=lines)
    try:
        data = _convert(loader, root, (), lines)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise ConfigError(
            f"YAML error: {exc.problem}", file=file, line=mark.line + 1 if mark else None
        ) from None
    return YamlDoc(data=data, file=file, lines=lines)


def load_yaml(path) -> YamlDoc:
    """Read and parse a YAML file; a missing file is a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {p}", hint="check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{p} is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not UTF-8 text") from None
    return parse_yaml(text, str(p))
