"""Fake of seed 004's own server (``python mychatserver.py``), written the seed's way.

One thread per client; each ``recv(1024)`` is one message, decoded as is. Exactly ``"exit"``:
``"exit"`` is sent back, the connection closed, ``Connection closed`` printed. Anything else
is printed as ``<port>:<data>`` (a trailing ``\\n`` in the data shows as a blank line) and sent
in one ``send`` to every other client, nothing added. The seed never checks for ``b""``: once
a client has closed, it keeps relaying ``<port>:`` -- the flood of issue 9 -- bounded here to
:data:`FLOOD` empty reads, after which it closes and prints ``Connection closed``.
``--port P`` (default 12000; 0 picks a free port, and the banner ``Server listening on
127.0.0.1:<port>`` shows the port really bound); prints ``ERR - cannot bind ...`` and exits 1
if P is busy.
"""

import contextlib
import socket
import sys
import threading

FLOOD = 20
clients: list[socket.socket] = []
lock = threading.Lock()


def handle(conn: socket.socket, port: int) -> None:
    empty_reads = 0
    while True:
        try:
            msg = conn.recv(1024).decode()
        except OSError:
            break
        if msg == "exit":
            conn.send(b"exit")
            break
        if not msg:
            empty_reads += 1
            if empty_reads > FLOOD:
                break
        print(f"{port}:{msg}", flush=True)
        with lock:
            others = [c for c in clients if c is not conn]
        for other in others:
            with contextlib.suppress(OSError):
                other.send(f"{port}:{msg}".encode())
    with lock:
        clients.remove(conn)
    conn.close()
    print("Connection closed", flush=True)


port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 12000
try:
    server = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR, listening
except OSError:
    print(f"ERR - cannot bind 127.0.0.1:{port}", flush=True)
    sys.exit(1)
print(f"Server listening on 127.0.0.1:{server.getsockname()[1]}", flush=True)
while True:
    conn, addr = server.accept()
    with lock:
        clients.append(conn)
    print(f"New connection from : {addr}", flush=True)
    threading.Thread(target=handle, args=(conn, addr[1]), daemon=True).start()
