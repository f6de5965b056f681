"""A topology file's text as data: YAML parsed within limits that keep hostile input cheap, and
the place (line and column) of every value kept, so that a problem found later in the data can
point at the line that holds it.

The limits (README, "Limits") are far above what a real topology needs (a 5,000-namespace file
is under 1 MiB, 120,000 values, 7 levels deep) and low enough that any input is refused within
a second or two and a few hundred MB:

- MAX_BYTES of text;
- MAX_DEPTH levels of nesting;
- MAX_VALUES values (keys, scalars, lists and mappings), counting every use of an alias as
  the values it stands for, and MAX_BYTES of scalar text counted the same way, so an alias
  bomb ("billion laughs") is refused before anything expands it;
- MAX_ENTRIES entries in one list or mapping;
- numbers of at most MAX_DIGITS characters.

Only YAML's plain types are read: strings, integers, floats, booleans, null, lists, mappings
(and `<<` merge keys). Any other tag (`!!timestamp`, `!!binary`, `!!set`, `!custom`, ...) is a
problem at its line, and a date written without quotes is read as the text it is.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nsgen.errors import MAX_PLACED, Problem, TopologyError

MAX_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_VALUES = 300_000
MAX_ENTRIES = 50_000
MAX_DIGITS = 40

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MERGE = (
    _TAG + name for name in ("str", "int", "float", "bool", "null", "merge")
)
SEQ, MAP = _TAG + "seq", _TAG + "map"
_TYPED = frozenset((INT, FLOAT, BOOL, NULL))
_SCALAR_TAGS = frozenset((STR, MERGE)) | _TYPED
_WORDS = {INT: "an integer", FLOAT: "a number", BOOL: "true or false", NULL: "null"}


def _plain_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """PyYAML's implicit types less those the format has no use for: a timestamp (an unquoted
    2024-01-01 stays text), and the `=` and `!`/`&`/`*` scalars that SafeLoader cannot build."""
    dropped = {_TAG + "timestamp", _TAG + "value", _TAG + "yaml"}
    return {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in dropped]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class _PyLoader(yaml.SafeLoader):
    """PyYAML's own parser, for a PyYAML built without libyaml."""


_Loader: type[Any] = getattr(yaml, "CSafeLoader", _PyLoader)


class _FastLoader(_Loader):  # type: ignore[misc]
    """libyaml's parser (about ten times faster) with SafeLoader's constructors."""


for _cls in (_PyLoader, _FastLoader):
    _cls.yaml_implicit_resolvers = _plain_resolvers()


class _PlainResolver(yaml.resolver.Resolver):
    """The resolver of both loaders, on its own: which tag a plain scalar's text gets."""


_PlainResolver.yaml_implicit_resolvers = _plain_resolvers()
_RESOLVER = _PlainResolver()


def _resolve(value: str) -> str:
    """The tag a plain scalar with this text gets."""
    return str(_RESOLVER.resolve(ScalarNode, value, (True, False)))  # type: ignore[no-untyped-call]


@dataclass
class Document:
    """A parsed topology file: its data (plain dicts, lists and scalars) and where each value
    is in the text."""

    data: Any
    marks: Marks


class Marks:
    """Where the values of a document are: a field path (as `Problem.path` spells it, e.g.
    `namespaces.red.interfaces[0].address`) to its line and column. Paths are resolved on
    demand, through the YAML node tree, which is composed again from the text when first
    needed: a valid file pays nothing for its marks, in time or memory."""

    def __init__(self, text: str, root: Node | None = None) -> None:
        self.text = text
        self._root = root
        self._composed = root is not None
        self._keys: dict[int, dict[str, tuple[Node, Node]]] = {}

    @property
    def root(self) -> Node | None:
        if not self._composed:
            self._composed = True
            loader = _FastLoader(self.text)
            try:
                self._root = loader.get_single_node()
            except yaml.YAMLError:  # the text parsed once already; never expected
                self._root = None
            finally:
                loader.dispose()
        return self._root

    def locate(self, path: str, at_key: bool = False) -> tuple[int, int] | None:
        """(line, column), 1-based, of the value at `path`, or of its key when `at_key`. A path
        whose last part is missing from the file (a required key left out) gives the place of
        the mapping that lacks it; a path that leaves the file earlier (an object the
        expanders generated) gives None."""
        root = self.root
        if root is None or not path:
            return None
        node: Node = root
        key: Node | None = None
        rest = path
        first = True
        while rest:
            step = self._step(node, rest, first)
            if step is None:
                if _parts(rest) == 1:
                    return _mark(node)
                return None
            key, node, rest = step
            first = False
        return _mark(key if at_key and key is not None else node)

    def _step(self, node: Node, rest: str, first: bool) -> tuple[Node | None, Node, str] | None:
        if isinstance(node, SequenceNode):
            match = re.match(r"\[(\d+)\]", rest)
            if match and int(match[1]) < len(node.value):
                return None, node.value[int(match[1])], rest[match.end() :]
            return None
        if not isinstance(node, MappingNode):
            return None
        keys = self._key_map(node)
        if rest.startswith("["):
            end = rest.find("]")
            while end != -1:
                try:
                    literal = ast.literal_eval(rest[1:end])
                except (ValueError, SyntaxError):
                    end = rest.find("]", end + 1)
                    continue
                found = keys.get(str(literal))
                if found is not None:
                    return found[0], found[1], rest[end + 1 :]
                break
            return None
        body = rest if first else rest[1:] if rest.startswith(".") else None
        if body is None:
            return None
        # the longest key that is a prefix of the rest up to a '.', a '[' or the end (a key
        # may hold dots itself: sysctls.net.ipv4.ip_forward)
        cuts = [i for i, ch in enumerate(body) if ch in ".["] + [len(body)]
        for cut in reversed(cuts):
            found = keys.get(body[:cut])
            if found is not None:
                return found[0], found[1], body[cut:]
        return None

    def _key_map(self, node: MappingNode) -> dict[str, tuple[Node, Node]]:
        found = self._keys.get(id(node))
        if found is None:
            found = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    found.setdefault(key.value, (key, value))
            self._keys[id(node)] = found
        return found

    def paths_of(self, targets: list[Node]) -> dict[int, tuple[str, bool]]:
        """The field path of each of these nodes of the document (by id) and whether the node
        is a key there, found in one walk ('' for the root)."""
        wanted = {id(node) for node in targets}
        found: dict[int, tuple[str, bool]] = {}
        for node, key, path in _walk_paths(self.root):
            if id(node) in wanted and id(node) not in found:
                found[id(node)] = (path, key)
                if len(found) == len(wanted):
                    break
        return found


def _parts(rest: str) -> int:
    """How many path parts a rest of a path holds: '.a' and '[0]' are one each."""
    return len(re.findall(r"\.[^.\[]*|\[[^\]]*\]", rest)) or 1


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _walk_paths(root: Node | None) -> Iterator[tuple[Node, bool, str]]:
    """Every node under `root` (once, following aliases once) with whether it is a key and
    its field path."""
    if root is None:
        return
    seen: set[int] = set()
    stack: list[tuple[Node, bool, str]] = [(root, False, "")]
    while stack:
        node, is_key, path = stack.pop()
        yield node, is_key, path
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[Node, bool, str]] = []
        if isinstance(node, MappingNode):
            for key, value in node.value:
                text = key.value if isinstance(key, ScalarNode) else "?"
                sub = _join(path, text)
                children += [(key, True, sub), (value, False, sub)]
        elif isinstance(node, SequenceNode):
            children = [(item, False, f"{path}[{i}]") for i, item in enumerate(node.value)]
        stack.extend(reversed(children))


def _join(path: str, key: str) -> str:
    if not key.isprintable():
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


# ---- reading ---------------------------------------------------------------------------------


class _Refused(Exception):
    """A limit was hit while inspecting the node tree: stop there."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


def parse_document(text: str, source: str) -> Document:
    """Parse a topology file's text. Raises TopologyError (every problem with its line and
    column) for a YAML syntax error, a key given twice, a tag the format does not use, a
    number too long, or a limit exceeded; never anything else."""
    if len(text) * 4 > MAX_BYTES and len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise TopologyError(
            source,
            [Problem("", f"the file is larger than {MAX_BYTES // 2**20} MiB, the limit")],
        )
    if _node_bound(text) > MAX_VALUES:
        _count_events(text, source)
    loader = _FastLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise TopologyError(source, [_yaml_problem(exc, text)]) from None
        except RecursionError:  # PyYAML's own (recursive) composer on a deep file
            raise TopologyError(
                source, [Problem("", f"nesting deeper than {MAX_DEPTH} levels")]
            ) from None
        marks = Marks(text, root)
        if root is None:
            return Document(None, marks)
        problems = _inspect(root, aliases="&" in text and "*" in text, marks=marks)
        if problems:
            raise TopologyError(source, problems)
        try:
            data = loader.construct_document(root)
        except yaml.YAMLError as exc:
            raise TopologyError(source, [_yaml_problem(exc, text)]) from None
    finally:
        loader.dispose()
    return Document(data, Marks(text))  # the node tree is not kept


def _node_bound(text: str) -> int:
    """An upper bound of the number of nodes `text` composes to, counted in C. A list item
    follows a '-', '[' or ','; a key starts a line or follows a '-', '?', '{', '[' or ','
    (and brings its value, null if absent); a ':' may make a single-pair mapping."""
    count = text.count
    breaks = sum(count(ch) for ch in "\n\r\x85\u2028\u2029")
    return (
        3
        + 3 * (count("-") + count("[") + count(","))
        + 2 * (breaks + count("?") + count("{"))
        + count(":")
    )


def _count_events(text: str, source: str) -> None:
    """Count the nodes of a text that may hold more than MAX_VALUES, from libyaml's event
    stream (one event in memory at a time), and refuse it at the first one over the limit."""
    loader = _FastLoader(text)
    count = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.NodeEvent):
                count += 1
                if count > MAX_VALUES:
                    mark = event.start_mark
                    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
                    raise TopologyError(
                        source,
                        [
                            Problem(
                                "",
                                f"more than {MAX_VALUES:,} values in one file",
                                line=line,
                                column=column,
                            )
                        ],
                    )
    except yaml.YAMLError as exc:
        raise TopologyError(source, [_yaml_problem(exc, text)]) from None
    finally:
        loader.dispose()


def _inspect(root: Node, aliases: bool, marks: Marks) -> list[Problem]:
    """Every problem of the node tree that must stop the reading before any value is built:
    tags the format does not use, typed values that are not of their type, numbers too
    long, keys given twice; and the limits, which stop the inspection at once."""
    found: list[tuple[Node, bool, str]] = []
    try:
        if aliases:
            _expansion(root)
        _check_nodes(root, found, walk_depth=not aliases)
    except _Refused as refused:
        found = [(refused.node, False, refused.message)]
    found = found[:MAX_PLACED]
    paths = marks.paths_of([node for node, _, _ in found])
    problems = []
    for node, at_key, message in found:
        path, is_key = paths.get(id(node), ("", False))
        line, column = _mark(node)
        problems.append(Problem(path, message, at_key or is_key, line, column))
    return problems


def _check_nodes(root: Node, found: list[tuple[Node, bool, str]], walk_depth: bool) -> None:
    seen: set[int] = set()
    count = 0
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if not walk_depth:
            if id(node) in seen:
                continue
            seen.add(id(node))
        elif depth > MAX_DEPTH:
            raise _Refused(node, f"nesting deeper than {MAX_DEPTH} levels")
        count += 1
        if count > MAX_VALUES:
            raise _Refused(node, f"more than {MAX_VALUES:,} values in one file")
        tag = node.tag
        if isinstance(node, ScalarNode):
            if tag == STR:
                continue
            if tag not in _SCALAR_TAGS:
                found.append((node, False, _tag_message(tag, "a value")))
            elif tag in _TYPED:
                value = node.value
                if tag == INT and len(value) > MAX_DIGITS:
                    found.append(
                        (
                            node,
                            False,
                            f"a number of {len(value)} characters is out of range of every field",
                        )
                    )
                elif _resolve(value) != tag:
                    found.append(
                        (
                            node,
                            False,
                            f"{value!r} is not {_WORDS[tag]}, as its tag {_short(tag)} says",
                        )
                    )
            continue
        items = node.value
        if len(items) > MAX_ENTRIES:
            kind = "mapping" if isinstance(node, MappingNode) else "list"
            raise _Refused(
                node, f"a {kind} of {len(items):,} entries, over the limit of {MAX_ENTRIES:,}"
            )
        if isinstance(node, SequenceNode):
            if tag != SEQ:
                found.append((node, False, _tag_message(tag, "a list")))
            stack.extend((item, depth + 1) for item in reversed(items))
            continue
        if tag != MAP:
            found.append((node, False, _tag_message(tag, "a mapping")))
        for key, value in reversed(items):
            stack.append((value, depth + 1))
            stack.append((key, depth + 1))
        if len(items) > 1:
            keys = [(k.tag, k.value) for k, _ in items if isinstance(k, ScalarNode)]
            if len(set(keys)) < len(keys):
                _duplicates(items, found)


def _duplicates(items: list[tuple[Node, Node]], found: list[tuple[Node, bool, str]]) -> None:
    first: dict[tuple[str, str], Node] = {}
    for key, _ in items:
        if not isinstance(key, ScalarNode):
            continue
        ident = (key.tag, key.value)
        if ident in first:
            earlier = first[ident].start_mark
            at = (
                f"column {earlier.column + 1}"
                if earlier.line == key.start_mark.line
                else f"line {earlier.line + 1}"
            )
            found.append(
                (key, True, f"key {key.value!r} appears twice in one mapping (first at {at})")
            )
        else:
            first[ident] = key


def _expansion(root: Node) -> None:
    """Refuse a document whose aliases expand past the limits, or refer to themselves, without
    expanding anything: each distinct node is measured once (values, scalar text, depth)."""
    measured: dict[int, tuple[int, int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        ident = id(node)
        children = _children(node)
        if done:
            open_nodes.discard(ident)
            values, size, depth = 1, len(node.value) if isinstance(node, ScalarNode) else 0, 0
            for child in children:
                v, s, d = measured[id(child)]
                values, size, depth = values + v, size + s, max(depth, d)
            depth += 1
            if values > MAX_VALUES:
                raise _Refused(node, f"the aliases here stand for more than {MAX_VALUES:,} values")
            if size > MAX_BYTES:
                raise _Refused(
                    node, f"the aliases here stand for more than {MAX_BYTES // 2**20} MiB of text"
                )
            if depth > MAX_DEPTH:
                raise _Refused(node, f"nesting deeper than {MAX_DEPTH} levels")
            measured[ident] = (values, size, depth)
            continue
        if ident in measured:
            continue
        if ident in open_nodes:
            raise _Refused(node, "an alias refers to a node that contains it (a loop)")
        open_nodes.add(ident)
        stack.append((node, True))
        for child in children:
            if id(child) not in measured:
                if id(child) in open_nodes:
                    raise _Refused(child, "an alias refers to a node that contains it (a loop)")
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _tag_message(tag: str, what: str) -> str:
    return f"the tag {_short(tag)!r} on {what} is not part of the topology format (remove it)"


# ---- YAML's own errors in plain words --------------------------------------------------------


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    """A YAML parser error as one Problem placed at its line and column."""
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _position(text, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return Problem(
            "", f"control character {char!r} is not allowed in YAML text", False, line, column
        )
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem("", f"YAML error: {exc}")
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    char = _char_at(text, mark.index) if mark else ""
    problem = exc.problem or exc.context or "invalid YAML"
    if char == "\t" or "tab character" in problem:
        return Problem("", "tabs cannot indent YAML; use spaces", line=line, column=column)
    if "maximum nesting depth" in problem:
        return Problem("", f"nesting deeper than {MAX_DEPTH} levels", line=line, column=column)
    if problem == "found character that cannot start any token" and char:
        problem = f"found character {char!r} that cannot start any token (quote the value)"
    elif problem.startswith("found undefined alias"):
        name = re.match(r"\*([^\s,\]}]*)", text[mark.index :]) if mark else None
        alias = name[1] if name else "?"
        problem = f"alias *{alias} is not defined (no anchor &{alias} before it)"
    elif problem == "but found another document":
        problem = "a second YAML document ('---'); a topology file holds one"
    elif problem == "found unhashable key":
        problem = "a key must be a plain value, not a list or a mapping"
    elif problem == "mapping values are not allowed in this context":
        problem = "mapping values are not allowed here (quote a value that holds ': ')"
    context = exc.context if exc.problem and "second YAML document" not in problem else None
    if context and exc.context_mark and exc.context_mark is not mark:
        context_line = exc.context_mark.line + 1
        if context_line != line or exc.context_mark.column + 1 != column:
            problem += f" ({context} at line {context_line}, column {exc.context_mark.column + 1})"
    return Problem("", f"YAML syntax error: {problem}", line=line, column=column)


def _char_at(text: str, index: int) -> str:
    return text[index] if 0 <= index < len(text) else ""


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character index."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1
