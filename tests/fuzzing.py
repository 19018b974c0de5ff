"""Hypothesis strategies that damage files the way disks, editors and hostile contributors do:
values of the wrong type, unexpected or missing fields, truncation, junk bytes."""
from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

#: Replacement values: every JSON type, out-of-range and non-finite numbers, odd strings.
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.lists(st.integers(-2, 2), max_size=3),
    st.dictionaries(st.sampled_from(["0.1", "0.3", "pgd", "x"]), st.floats(0, 1), max_size=2),
)


def key_paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path (tuples of dict keys / list indices) inside `obj`."""
    out = []
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return out
    for k, v in items:
        out.append(prefix + (k,))
        out.extend(key_paths(v, prefix + (k,)))
    return out


def mutate(data: st.DataObject, obj: Any, rounds: int = 3) -> Any:
    """A copy of `obj` with 1 to `rounds` fields replaced by a `VALUES` value, deleted, or (in an
    object) joined by an unexpected field."""
    obj = copy.deepcopy(obj)
    for _ in range(data.draw(st.integers(1, rounds))):
        paths = key_paths(obj)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        node = obj
        for k in path[:-1]:
            node = node[k]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if isinstance(node, dict) and action == "delete":
            del node[path[-1]]
        elif isinstance(node, dict) and action == "add":
            node[data.draw(st.text(min_size=1, max_size=6))] = data.draw(VALUES)
        else:
            node[path[-1]] = data.draw(VALUES)
    return obj


def damaged_json_text(data: st.DataObject, obj: Any) -> str:
    """`obj` as JSON text, damaged: fields mutated (`mutate`), the text truncated, junk appended,
    or the whole document replaced by another JSON type."""
    kind = data.draw(st.sampled_from(["mutate", "mutate", "truncate", "junk", "other-type"]))
    if kind == "other-type":
        return json.dumps(data.draw(VALUES))
    text = json.dumps(mutate(data, obj) if kind == "mutate" else obj, indent=2)
    if kind == "truncate":
        return text[: data.draw(st.integers(0, len(text) - 1))]
    if kind == "junk":
        return text + data.draw(st.text(min_size=1, max_size=8))
    return text
