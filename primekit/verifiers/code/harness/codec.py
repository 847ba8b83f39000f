"""Script mode's value channel: the benchmark's test code and the candidate run in two processes
that exchange encoded plain values over a pair of pipes, one JSON line per message.

The test process (forked from the clean harness, never touched by candidate code) runs the
benchmark's trusted prelude and test snippets; every name the tests take from the candidate's
module is a proxy whose calls travel to the candidate process as encoded plain values and come
back the same way. So the candidate cannot patch ``compile``/``exec``/``assert`` of the tests,
never holds the result channel, and every comparison the tests make is between values decoded
into built-in types (its ``__eq__`` never runs): an object that is not plain data comes back as an
opaque reference, equal only to itself.
"""

from __future__ import annotations

import json
import math
import os

READ_CHUNK = 1 << 16
#: Classes of a trusted prelude passed by value (LeetCode's linked-list and tree nodes).
NODE_CLASSES = ("ListNode", "TreeNode")
_ITERATOR_TYPES = ("generator", "map", "filter", "zip", "enumerate", "reversed", "list_iterator",
                   "tuple_iterator", "range_iterator", "dict_keyiterator", "dict_valueiterator",
                   "dict_itemiterator", "set_iterator", "str_iterator", "itertools.chain")
_MAX_ITEMS = 1 << 20  # items drawn from an iterator a program returns


class Codec:
    """Plain values <-> JSON-ready data: tuples, sets, dicts with any keys, bytes and non-finite
    floats tagged; LeetCode nodes by their attributes; anything else by reference (a number that
    means something only to the process that holds the object)."""

    def __init__(self, namespace: dict, make_reference, resolve_reference) -> None:
        self.namespace = namespace
        self.make_reference = make_reference
        self.resolve_reference = resolve_reference

    def encode(self, value):
        kind = type(value)
        if value is None or kind in (bool, str, int):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if kind is list:
            return [self.encode(item) for item in value]
        if kind in (tuple, set, frozenset):
            return {"$": kind.__name__, "v": [self.encode(item) for item in value]}
        if kind is dict:
            return {"$": "dict", "v": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if kind is bytes:
            return {"$": "bytes", "v": value.decode("latin-1")}
        if kind is complex:
            return {"$": "complex", "v": [self.encode(value.real), self.encode(value.imag)]}
        if kind is range:
            return {"$": "range", "v": [value.start, value.stop, value.step]}
        # subclasses of plain types (Counter, namedtuple, IntEnum, ...) travel as their plain
        # contents: whatever methods they redefine, the other side sees only values
        for plain in (bool, int, float, str, bytes, list, tuple, dict, set, frozenset):
            if isinstance(value, plain):
                return self.encode(plain(value) if plain is not dict else dict(value.items()))
        name = getattr(kind, "__name__", "")
        if name in NODE_CLASSES and self.namespace.get(name) is kind:
            return {"$": "node", "c": name, "v": {str(k): self.encode(v) for k, v in vars(value).items()}}
        if name in _ITERATOR_TYPES or getattr(kind, "__module__", "") + "." + name in _ITERATOR_TYPES:
            items = []
            for item in value:
                if len(items) >= _MAX_ITEMS:
                    raise MemoryError("an endless iterator")
                items.append(self.encode(item))
            return {"$": "iter", "v": items}
        if getattr(kind, "__module__", "") == "numpy" and hasattr(value, "tolist"):
            return self.encode(value.tolist())
        return {"$": "ref", "v": self.make_reference(value)}

    def decode(self, data):
        kind = type(data)
        if data is None or kind in (bool, str, int, float):
            return data
        if kind is list:
            return [self.decode(item) for item in data]
        if kind is not dict:
            raise ValueError("not an encoded value")
        tag, value = data.get("$"), data.get("v")
        if tag == "float" and value in ("nan", "inf", "-inf"):
            return float(value)
        if tag in ("tuple", "set", "frozenset", "iter") and type(value) is list:
            items = [self.decode(item) for item in value]
            return iter(items) if tag == "iter" else {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict" and type(value) is list:
            return {self.decode(pair[0]): self.decode(pair[1]) for pair in value if type(pair) is list and len(pair) == 2}
        if tag == "bytes" and type(value) is str:
            return value.encode("latin-1")
        if tag == "complex" and type(value) is list and len(value) == 2:
            return complex(float(value[0]), float(value[1]))
        if tag == "range" and type(value) is list and len(value) == 3 and all(type(v) is int for v in value):
            return range(*value)
        if tag == "node" and data.get("c") in NODE_CLASSES and type(value) is dict:
            node_class = self.namespace.get(data["c"])
            if not isinstance(node_class, type):
                raise ValueError(f"no class {data['c']}")
            node = node_class.__new__(node_class)
            for key, item in value.items():
                if type(key) is str and key.isidentifier():
                    setattr(node, key, self.decode(item))
            return node
        if tag == "ref" and type(value) is int:
            return self.resolve_reference(value)
        raise ValueError("not an encoded value")


class LineChannel:
    """JSON lines over a pair of pipes, each line read with a size bound."""

    def __init__(self, read_fd: int, write_fd: int, max_bytes: int) -> None:
        self.read_fd, self.write_fd, self.max_bytes = read_fd, write_fd, max_bytes
        self.buffer = b""

    def send(self, message) -> None:
        view = memoryview((json.dumps(message) + "\n").encode())
        while view:
            view = view[os.write(self.write_fd, view):]

    def receive(self):
        while b"\n" not in self.buffer:
            if len(self.buffer) > self.max_bytes:
                raise ValueError("a message longer than the output limit")
            chunk = os.read(self.read_fd, READ_CHUNK)
            if not chunk:
                raise CandidateGone("the program ended before this test finished")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        if len(line) > self.max_bytes:
            raise ValueError("a message longer than the output limit")
        return json.loads(line)


class CandidateGone(Exception):
    """The candidate process closed its end (it exited, or was killed)."""
