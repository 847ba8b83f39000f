"""The test process of an assert-based suite (HumanEval, MBPP, LeetCode): trusted code only. It
runs the benchmark's prelude and test snippets, with every name they take from the program bound
to a :class:`_Remote` proxy of an object in the candidate process (see ``codec``), and writes one
record per test on its result pipe."""

from __future__ import annotations

import ast
import builtins
import json
import os

from codec import CandidateGone, Codec, LineChannel


class _RemoteError(Exception):
    """The candidate's code raised an exception that is not a built-in one."""


class _Remote:
    """A function, class or object of the candidate's process. Calls and attribute reads are sent
    there; equality is identity (the candidate's ``__eq__`` never runs here)."""

    __slots__ = ("_proxy_link", "_proxy_ref")

    def __init__(self, link, ref: int) -> None:
        object.__setattr__(self, "_proxy_link", link)
        object.__setattr__(self, "_proxy_ref", ref)

    def __call__(self, *args, **kwargs):
        return self._proxy_link.request({"op": "call", "ref": self._proxy_ref, "args": list(args), "kwargs": kwargs})

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._proxy_link.request({"op": "getattr", "ref": self._proxy_ref, "name": name})

    def __setattr__(self, name, value) -> None:
        raise AttributeError("objects of the program are read-only to the tests")

    def __repr__(self) -> str:
        return f"<object of the program #{self._proxy_ref}>"


class _Link:
    """The test process's end of the value channel to the candidate process."""

    def __init__(self, channel: LineChannel, namespace: dict) -> None:
        self.channel = channel
        self.sequence = 0
        self.remotes: dict[int, _Remote] = {}
        self.codec = Codec(namespace, self._reference_of, self._remote)

    def _remote(self, ref: int) -> _Remote:
        if ref not in self.remotes:
            self.remotes[ref] = _Remote(self, ref)
        return self.remotes[ref]

    @staticmethod
    def _reference_of(value) -> int:
        if type(value) is _Remote:
            return object.__getattribute__(value, "_proxy_ref")
        raise TypeError(f"a {type(value).__name__} cannot be passed to the program (plain data only)")

    def request(self, message: dict):
        self.sequence += 1
        message["n"] = self.sequence
        for key in ("args", "kwargs"):
            if key in message:
                message[key] = self.codec.encode(message[key])
        self.channel.send(message)
        answer = self.channel.receive()
        if type(answer) is not dict or answer.get("n") != self.sequence:
            raise ValueError("a garbled answer from the program")
        if "ok" in answer:
            return self.codec.decode(answer["ok"])
        raised = answer.get("raise")
        name, text = (str(raised[0]), str(raised[1])) if type(raised) is list and len(raised) == 2 else ("?", "")
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception) and builtin.__module__ == "builtins":
            try:
                error = builtin(text)
            except Exception:
                error = _RemoteError(f"{name}: {text}")
        else:
            error = _RemoteError(f"{name}: {text}")
        raise error


def _names_read(sources: list[str]) -> set[str]:
    """Every name the test snippets read (at any depth: ``check``'s body reads ``candidate``)."""
    names: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        names.update(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))
    return names


def run_tests(suite: dict, tests: list[int], link_fds: tuple[int, int], result_fd: int, max_bytes: int) -> None:
    """Body of the test process (trusted code only); never returns. Writes one record per test:
    ``{"test": i, "status": ..., "detail": ...}``."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    link = _Link(LineChannel(link_fds[0], link_fds[1], max_bytes), namespace)
    codes = [suite["tests"][i]["code"] for i in tests]

    def record(index: int, status: str, detail: str = "") -> None:
        line = json.dumps({"test": index, "status": status, "detail": detail[:2000]}) + "\n"
        view = memoryview(line.encode())
        while view:
            view = view[os.write(result_fd, view):]

    try:
        ready = link.channel.receive()
        exec(compile(suite.get("prelude") or "", "prelude.py", "exec"), namespace)
    except BaseException as error:
        detail = str(error) if isinstance(error, CandidateGone) else f"{type(error).__name__}: {error}"
        for index in tests:
            record(index, "exited_early" if isinstance(error, CandidateGone) else "error", detail)
        os._exit(0)
    if type(ready) is not dict or "error" in ready or type(ready.get("names")) is not dict:
        detail = str(ready.get("error", "")) if type(ready) is dict else "a garbled start"
        for index in tests:
            record(index, "error", detail or "the program failed")
        os._exit(0)
    targets = set(suite.get("targets") or ())
    offered = {name: ref for name, ref in ready["names"].items() if type(name) is str and type(ref) is int}
    for name in _names_read(codes):
        if name in targets or (name not in namespace and not hasattr(builtins, name) and name in offered):
            namespace.pop(name, None)
            if name in offered:
                namespace[name] = link.codec.decode({"$": "ref", "v": offered[name]})
    stop_on_failure = bool(suite.get("stop_on_failure"))
    for index, code in zip(tests, codes):
        try:
            exec(compile(code, f"test_{index}.py", "exec"), namespace)
            status, detail = "passed", ""
        except AssertionError as error:
            status, detail = "wrong_answer", f"a test assertion failed{': ' + str(error) if str(error) else ''}"
        except CandidateGone as error:
            status, detail = "exited_early", str(error)
        except BaseException as error:
            status, detail = "error", f"{type(error).__name__}: {error}"
        record(index, status, detail)
        if stop_on_failure and status != "passed":
            break
    os._exit(0)
