"""The zygote: the process from which every candidate process of an assert-based suite is
forked (see :class:`Zygote`)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket

from candidate import child_setup, serve_candidate
from isolation import fresh_ipc_namespace, load_libc


class Zygote:
    """A process forked from the harness before it has read any suite, from which every candidate
    process of an assert-based suite is forked: the candidate's memory never held any test code
    (not in a reachable object, not in freed memory), of this program or of the ones before.

    The harness sends it, over a socketpair, the program's source (in a memfd) and the candidate's
    pipes (as descriptors); it makes a fresh IPC namespace, forks the candidate and answers with its
    pid. It ignores SIGCHLD, so the kernel reaps its children. A program that kills or stops it
    makes the next spawn fail, which retires the sandbox."""

    def __init__(self, fresh_ipc: bool) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                parent.close()
                _zygote_main(child, fresh_ipc)
            finally:
                os._exit(4)
        child.close()
        self.socket = parent

    def spawn(self, source: str, fds: tuple[int, ...], cpu_seconds: float, max_output: int) -> int:
        """Fork a candidate process serving ``source`` on ``fds`` (request in, answers out, stdout,
        stderr); its pid. Raises OSError if the zygote does not answer at once."""
        program = os.memfd_create("program")
        try:
            data = memoryview(source.encode("utf-8", errors="surrogatepass"))
            while data:
                data = data[os.write(program, data):]
            os.kill(self.pid, signal.SIGCONT)  # a program may have stopped it
            message = json.dumps({"cpu_seconds": cpu_seconds, "max_output": max_output}).encode()
            socket.send_fds(self.socket, [message], [program, *fds])
        finally:
            os.close(program)
        poller = select.poll()
        poller.register(self.socket.fileno(), select.POLLIN)
        if not poller.poll(5000):
            raise OSError("the zygote did not answer")
        answer = self.socket.recv(64)
        if not answer.isdigit() or int(answer) <= 0:
            raise OSError("the zygote could not start the program")
        return int(answer)


def _zygote_main(connection, fresh_ipc: bool) -> None:
    """Body of the zygote; never returns."""
    libc = load_libc()
    keep = connection.fileno()
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    null = 0
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(connection, 4096, 8)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        pid = 0
        try:
            request = json.loads(message)
            if len(fds) != 5:
                raise OSError("descriptors missing")
            if fresh_ipc:
                fresh_ipc_namespace(libc)
            pid = os.fork()
            if pid == 0:
                try:
                    size = os.fstat(fds[0]).st_size
                    source = os.pread(fds[0], size, 0).decode("utf-8", errors="surrogatepass")
                    os.close(fds[0])
                    child_setup(null, fds[3], fds[4], (fds[1], fds[2]), request["cpu_seconds"])
                    serve_candidate(compile(source, "solution.py", "exec"), (3, 4), request["max_output"])
                finally:
                    os._exit(4)
        except BaseException:
            pid = 0
        for fd in fds:
            os.close(fd)
        try:
            connection.send(str(pid).encode())
        except OSError:
            os._exit(0)
