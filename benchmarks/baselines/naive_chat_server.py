"""A naive chat server, the kind a first implementation looks like: one thread per client.

Line dialect, compatible with triochat's: the first line is the name, then every line is sent
to every other client as ``<name>: <line>``. Each broadcast holds one global lock and calls a
blocking ``sendall`` on every other client in turn, so messages keep one total order, and one
client that stops reading stalls everyone (the benchmark shows it).

    python benchmarks/baselines/naive_chat_server.py <port> [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import resource
import socket
import threading

clients: dict[socket.socket, str] = {}
lock = threading.Lock()


def broadcast(sender: socket.socket, data: bytes) -> None:
    """Send ``data`` to every client but ``sender``, under the one lock."""
    with lock:
        for client in list(clients):
            if client is sender:
                continue
            try:
                client.sendall(data)
            except OSError:
                clients.pop(client, None)


def handle(connection: socket.socket) -> None:
    """One client from its name line to its last byte."""
    reader = connection.makefile("rb")
    try:
        name = reader.readline().strip().decode("utf-8", "replace")
        if not name:
            return
        with lock:
            clients[connection] = name
        prefix = f"{name}: ".encode()
        for line in reader:
            text = line.rstrip(b"\r\n")
            if text:
                broadcast(connection, prefix + text + b"\n")
    except OSError:
        pass
    finally:
        with lock:
            clients.pop(connection, None)
        reader.close()
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="naive thread-per-client chat server")
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.create_server((args.host, args.port), backlog=4096)
    try:
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=handle, args=(connection,), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


if __name__ == "__main__":
    main()
