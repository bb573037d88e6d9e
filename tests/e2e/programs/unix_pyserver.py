# A real server: Python's socketserver.ThreadingUnixStreamServer (its own
# poll loop, a handler thread per connection) on a path, and a client in a
# child process with a conversation in progress: one reply read, one
# waiting unread in the client's socket, the server's handler thread
# blocked reading the next line. Prints "READY <pid>" for both; after
# SIGUSR1 (to the server, which passes it on) the client reads the waiting
# reply, talks on, and a new client connects by path; the server prints
# PASS when the client said PASS.
#   python3 unix_pyserver.py SOCKET_PATH
import os
import select
import signal
import socket
import socketserver
import sys
import threading

path = sys.argv[1]


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"echo:" + line)


def say(line):
    # One write(2) per line: the two processes share the output file.
    os.write(1, (line + "\n").encode())


def expect(sock, want, what):
    got = b""
    while len(got) < len(want):
        part = sock.recv(len(want) - len(got))
        if not part:
            break
        got += part
    if got != want:
        say("FAIL: %s: got %r, want %r" % (what, got, want))
        os._exit(1)


srv = socketserver.ThreadingUnixStreamServer(path, Echo)
go = threading.Event()
signal.signal(signal.SIGUSR1, lambda *a: go.set())
child = os.fork()
if child == 0:
    srv.socket.close()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    c.sendall(b"one\n")
    expect(c, b"echo:one\n", "the first reply")
    c.sendall(b"two\n")
    select.select([c], [], [])  # the reply is there, unread
    say("READY %d" % os.getpid())
    go.wait()
    expect(c, b"echo:two\n", "the reply waiting at the dump")
    c.sendall(b"three\n")
    expect(c, b"echo:three\n", "a reply after the restore")
    d = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    d.connect(path)
    d.sendall(b"four\n")
    expect(d, b"echo:four\n", "a new client's reply")
    say("client done")
    os._exit(0)

threading.Thread(target=srv.serve_forever, daemon=True).start()
say("READY %d" % os.getpid())
say("CHILDREN %d" % child)
go.wait()
os.kill(child, signal.SIGUSR1)
_, status = os.waitpid(child, 0)
srv.shutdown()
os.unlink(path)
say("PASS" if status == 0 else "FAIL: the client failed")
sys.exit(0 if status == 0 else 1)
