"""Reading a YAML mapping key by key, with errors that name the file and the key path."""

from __future__ import annotations

import math
import numbers
from typing import Any

import yaml

from popplast.errors import SpecError

REQUIRED = object()

_KINDS = {
    "int": ("an integer", lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)),
    "number": (
        "a finite number",
        lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v),
    ),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str) and v != ""),
    "list": ("a list", lambda v: isinstance(v, list)),
    "mapping": ("a mapping", lambda v: isinstance(v, dict)),
    "any": ("a value", lambda v: True),
}


class Section:
    """One mapping of a spec file; `take` reads keys, `finish` refuses the ones nobody read."""

    def __init__(self, data: Any, source: str, path: str) -> None:
        if not isinstance(data, dict):
            raise SpecError(source, path or "(top level)", f"expected a mapping, got {describe(data)}.")
        self.data = data
        self.source = source
        self.path = path
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, expected: str) -> SpecError:
        return SpecError(self.source, self.key(name), expected)

    def take(self, name: str, kind: str, default: Any = REQUIRED) -> Any:
        self._read.add(name)
        if name not in self.data or (self.data[name] is None and default is not REQUIRED):
            if default is REQUIRED:
                raise SpecError(self.source, self.key(name), f"this key is required ({_KINDS[kind][0]}).")
            return default
        value = self.data[name]
        text, ok = _KINDS[kind]
        if not ok(value):
            raise self.error(name, f"expected {text}, got {describe(value)}.")
        if kind == "number":
            value = float(value)
        elif kind == "int":
            value = int(value)
        return value

    def is_null(self, name: str) -> bool:
        """The key is written, with no value (`key: null` or `key:`)."""
        return name in self.data and self.data[name] is None

    def section(self, name: str, default: Any = REQUIRED) -> "Section":
        self._read.add(name)
        if name not in self.data or self.data[name] is None:
            if default is REQUIRED:
                raise SpecError(self.source, self.key(name), "this section is required (a mapping).")
            return Section(default, self.source, self.key(name))
        return Section(self.data[name], self.source, self.key(name))

    def finish(self) -> None:
        unknown = [k for k in self.data if k not in self._read]
        if unknown:
            allowed = ", ".join(sorted(self._read))
            raise SpecError(self.source, self.key(str(unknown[0])), f"unknown key; expected one of: {allowed}.")


def describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__} ({value!r:.60})"
    return f"{type(value).__name__} {value!r}"


MAX_NODES = 100_000  # values in a file once its aliases are expanded: a search file holds a few hundred


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last silently), and
    a document whose aliases make a loop or expand past MAX_NODES values: PyYAML builds both as shared
    objects in no time, but every walk over them afterwards (our checks, json.dumps of the spec) recurses
    forever or expands them, which for ten lines of nested aliases is billions of values."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_tree(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool, type(None))):
                continue  # a key PyYAML itself refuses (a list, a mapping) gets its own error
            if key in seen:
                raise DuplicateKey(f"the key {key!r} is written twice, on lines {seen[key]} and {line}")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class DuplicateKey(yaml.YAMLError):
    pass


class NotATree(yaml.YAMLError):
    """A document that is no tree of plain values, at `key` (a key path)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _children(node: yaml.Node) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(item, str(i)) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out = []
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            out += [(key, name), (value, name)]
        return out
    return []


def _check_tree(root: yaml.Node) -> None:
    """Each node's size once expanded, computed once per node (linear in the file, however far its aliases
    expand), without recursion; an alias to a node that contains it is a NotATree, as is a size past
    MAX_NODES."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # the nodes on the way from the root to the current one
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, path, done = stack.pop()
        if done:
            open_.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child, _ in _children(node))
            if sizes[id(node)] > MAX_NODES:
                raise NotATree(
                    path or "(top level)",
                    f"its aliases expand to more than {MAX_NODES:,} values (line {node.start_mark.line + 1}); "
                    "a search file needs a few hundred, so this is refused as an alias bomb",
                )
            continue
        if id(node) in sizes:
            continue  # an alias to a node already walked
        if id(node) in open_:
            raise NotATree(
                path or "(top level)",
                f"an alias stands for a value that contains it (anchored on line {node.start_mark.line + 1}), "
                "a loop; popplast reads plain values, lists and mappings",
            )
        open_.add(id(node))
        stack.append((node, path, True))
        for child, name in reversed(_children(node)):  # in the file's order: a key path names the first place
            stack.append((child, f"{path}.{name}" if path else name, False))


def parse_yaml(stream: Any) -> Any:
    """YAML text or a file as plain data, by the one loader popplast reads YAML with (load_yaml's checks but
    the finite numbers); a YAMLError, also for a document too deeply nested for the parser."""
    try:
        return yaml.load(stream, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
    except RecursionError:  # PyYAML's parser recurses per level of nesting
        raise NotATree("", "it is nested too deeply for the YAML parser") from None


def load_yaml(source: str) -> Any:
    """The parsed file, or a SpecError naming the file and, for bad YAML, the line and column; a key written
    twice, a file that is not text, aliases that loop or expand too far, and numbers that are not finite (.nan,
    .inf) anywhere are refused."""
    try:
        with open(source, encoding="utf-8") as f:
            data = parse_yaml(f)
    except FileNotFoundError:
        raise SpecError(source, "", "the file does not exist.") from None
    except IsADirectoryError:
        raise SpecError(source, "", "expected a YAML file, got a directory.") from None
    except PermissionError:
        raise SpecError(source, "", "the file cannot be read (permission denied).") from None
    except UnicodeDecodeError as e:
        raise SpecError(
            source, "", f"expected a YAML text file (UTF-8), got bytes that are not text at {e.start}."
        ) from None
    except DuplicateKey as e:
        raise SpecError(source, "", f"{e}.") from None
    except NotATree as e:
        raise SpecError(source, e.key, f"{e.problem}.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(source, "", f"the file is not valid YAML{where}: {problem}.") from None
    bad = _non_finite(data, "")
    if bad is not None:
        raise SpecError(source, bad[0], f"expected a finite number, got {bad[1]}.")
    return data


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The key path and value of the first NaN or infinity in the parsed file."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(top level)", value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def check_json(value: Any, source: str, path: str) -> None:
    """A SpecError at the first part of `value` that JSON does not hold as it is."""
    bad = _not_json(value, path)
    if bad is not None:
        raise SpecError(
            source,
            bad[0],
            "expected a value JSON holds as it is (text, a number, true or false, null, a list, or a mapping "
            f"with text keys), got {bad[1]}.",
        )


def _not_json(value: Any, path: str) -> tuple[str, str] | None:
    """The key path and a description of the first part of `value` that JSON does not hold as it is: a date,
    a set, bytes, a pair (!!omap), a mapping key that is not text (json.dumps turns 1 into "1")."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    if isinstance(value, list):
        items: Any = enumerate(value)
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                return f"{path}.{key}", f"the {type(key).__name__} key {key!r:.60} (write it in quotes)"
        items = value.items()
    else:
        return path, f"{type(value).__name__} ({value!r:.60})"
    for key, item in items:
        found = _not_json(item, f"{path}.{key}")
        if found is not None:
            return found
    return None
