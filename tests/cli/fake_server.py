#!/usr/bin/env python3
"""A listener that is not chand, for test_chanctl_connect.sh.

fake_server.py MODE PORTFILE listens on 127.0.0.1 and a free port, writes
the port to PORTFILE, then, for each connection, per MODE:
  silent   never accepts (the kernel completes the handshake; nobody reads)
  http     answers as an HTTP server does to a line it cannot parse
  garbage  answers a line of bytes that are not JSON
  close    reads the request and hangs up without a word
The test stops it by pid.
"""
import os
import socket
import sys
import time

mode, portfile = sys.argv[1], sys.argv[2]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
if mode == "silent":
    while True:
        time.sleep(3600)
while True:
    c, _ = s.accept()
    c.recv(4096)
    if mode == "http":
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    elif mode == "garbage":
        c.sendall(b"\x00\x01garbage here\n")
    c.close()
