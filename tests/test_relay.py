"""The relay's own parts, against real execnet gateways."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import execnet

from pytest_upskill.generate.relay import serialize_sends

_COUNT = """
bad = n = 0
while (item := channel.receive()) is not None:
    n += 1
    bad += item[1] != chr(65 + item[0] % 26) * len(item[1])
channel.send((n, bad))
"""


def test_messages_sent_from_many_threads_over_a_socket_gateway_arrive_whole() -> None:
    """As the relay sends, one thread per answer beside xdist's own thread: execnet writes a
    socket gateway's messages unlocked, and large ones interleave (the gateway breaks) unless
    sends are serialized."""
    command = [sys.executable, "-u", "-m", "execnet.script.socketserver", "127.0.0.1:0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = next(
            found[1]
            for line in server.stdout
            if (found := re.search(r"Accept loop \('127.0.0.1', (\d+)\)", line))
        )
        gateway = execnet.makegateway(f"socket=127.0.0.1:{port}")
        serialize_sends(gateway)
        channel = gateway.remote_exec(_COUNT)
        failures: list[BaseException] = []

        def send(index: int) -> None:
            try:
                for _ in range(200):
                    channel.send((index, chr(65 + index % 26) * (1 << 16)))
            except BaseException as exc:  # the gateway broke under the interleaving
                failures.append(exc)

        threads = [threading.Thread(target=send, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        channel.send(None)
        assert channel.receive(timeout=120) == (1600, 0)
        gateway.exit()
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
