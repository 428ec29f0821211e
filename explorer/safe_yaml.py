"""YAML for specs, recipes and ``--set`` values: safe, and bounded in size.

``yaml.safe_load`` runs no code, but it still expands aliases: a few hundred bytes of nested
``&a [*a, *a, ...]`` make a document of billions of nodes, which exhausts memory as soon as
anything walks it (validation, ``deepcopy``, an error message quoting the value). Here the
composed node graph is measured before anything is built from it: each node counts as often
as aliases make it appear, and a document over ``MAX_NODES`` is refused. Plain documents, and
the few anchors people use to avoid repeating a block, stay far below it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from explorer.errors import SpecError

#: Nodes of a document after alias expansion. The largest spec in search_spaces/ has ~150.
MAX_NODES = 100_000
#: Bytes of a spec or recipe file: they are a few KB.
MAX_BYTES = 1 << 20


class RefusedYaml(SpecError):
    """Valid YAML refused for what it holds: alias bombs, cycles, deep nesting, NUL characters
    (every file-system call on a value holding one raises ``embedded null byte``)."""


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of ``root`` with every alias expanded, or a SpecError once over ``MAX_NODES``.

    Sizes are memoised per node, so the work is linear in the *composed* graph even when its
    expansion is astronomically large.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        kids = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) \
            else list(node.value) if isinstance(node, yaml.SequenceNode) else []
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            if sizes[key] > MAX_NODES:
                raise RefusedYaml(f"expands to more than {MAX_NODES:,} values through its "
                                "aliases (*name); write the values out instead")
            continue
        if key in open_nodes:
            raise RefusedYaml("an alias (*name) refers to a block that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


def _scalars(root: yaml.Node) -> list[yaml.ScalarNode]:
    """The scalar nodes of a graph already proven bounded (each node once)."""
    seen, out, stack = set(), [], [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            out.append(node)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        else:
            stack.extend(node.value)
    return out


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    problem = getattr(exc, "problem", None) or "invalid YAML"
    return f"not valid YAML{at}: {problem}"


def load_yaml(text: str, where: str) -> Any:
    """``text`` parsed like ``yaml.safe_load``; every problem is a one-line ``SpecError``
    starting with ``where``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        if any("\0" in str(n.value) for n in _scalars(node)):
            raise RefusedYaml("a value contains a NUL character")
        return loader.construct_document(node)
    except RefusedYaml as exc:
        raise RefusedYaml(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: {_yaml_problem(exc)}") from None
    except RecursionError:  # the composer recurses once per nesting level
        raise RefusedYaml(f"{where}: nested too deeply to be a spec") from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path, what: str) -> Any:
    """A spec or recipe file: present, a file, of sane size, UTF-8, bounded YAML."""
    if not path.is_file():
        raise SpecError(f"{path}: {what} not found" + (" (it is a folder)" if path.is_dir()
                                                        else ""))
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise SpecError(f"{path}: over {MAX_BYTES >> 20} MB, too large to be a {what}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a text file (byte {exc.start} is not UTF-8): is this "
                        f"the {what}?") from None
    return load_yaml(text, str(path))
