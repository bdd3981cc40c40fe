"""A TCP server for reconnector.py: it accepts connections on 0.0.0.0:PORT
and prints "conn K" when the K-th connection comes and each line it
receives as "got N".

usage: lineserver.py PORT
"""
import socket
import sys
import threading

port = int(sys.argv[1])
lock = threading.Lock()
count = 0


def serve(c):
    with c, c.makefile("rb") as f:
        for line in f:
            with lock:
                print("got %s" % line.decode().strip(), flush=True)


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen()
while True:
    c, _ = s.accept()
    with lock:
        count += 1
        print("conn %d" % count, flush=True)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
