"""A client that re-makes its TCP connection when it breaks (ssi run
--reconnects): it connects to HOST:PORT, sends a numbered line every
INTERVAL seconds, and prints "sent N" for each and "reconnected (why)" when it
had to connect again. A line whose send failed is sent again on the new
connection; one written into the socket just before a move may be lost with
the connection (the socket's queue is not carried: CRIU --tcp-close).

usage: reconnector.py HOST PORT INTERVAL
"""
import socket
import sys
import time

host, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


def connect():
    while True:
        try:
            return socket.create_connection((host, port), timeout=5)
        except OSError as e:
            print("connect failed (%s)" % e, flush=True)
            time.sleep(0.2)


c = connect()
n = 1
while True:
    try:
        c.sendall(b"%d\n" % n)
        print("sent %d" % n, flush=True)
        n += 1
    except OSError as e:
        c.close()
        c = connect()
        print("reconnected (%s)" % e.strerror, flush=True)
        continue
    time.sleep(interval)
