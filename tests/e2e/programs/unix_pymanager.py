# A real program: Python's multiprocessing with a Manager (a server
# process listening on a unix socket, its clients authenticated over it,
# a handler thread per connection), a managed dict and Event shared with a
# worker process, and a Queue (pipes) back. Prints "READY <pid>" and
# "CHILDREN <manager> <worker>" once the worker has used the dict; after
# SIGUSR1 the worker waits on the managed Event, the main process sets
# it, the worker updates the dict through its connection, and the main
# process checks the dict and prints PASS.
import multiprocessing as mp
import os
import signal
import threading


def say(line):
    os.write(1, (line + "\n").encode())


def worker(d, q, go):
    d["worker"] = os.getpid()
    q.put("ready")
    go.wait()
    d["after"] = d["before"] + 1
    q.put("done")


if __name__ == "__main__":
    mp.set_start_method("fork")
    manager = mp.Manager()
    d = manager.dict()
    d["before"] = 41
    q = mp.Queue()
    go = manager.Event()
    w = mp.Process(target=worker, args=(d, q, go))
    w.start()
    if q.get(timeout=20) != "ready":
        say("FAIL: the worker did not start")
    ev = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *a: ev.set())
    say("READY %d" % os.getpid())
    say("CHILDREN %d %d" % (manager._process.pid, w.pid))
    ev.wait()
    go.set()
    r = q.get(timeout=20)
    w.join(20)
    if r == "done" and d.get("after") == 42 and d.get("worker") == w.pid and w.exitcode == 0:
        say("PASS")
    else:
        say("FAIL: %r %r %r" % (r, dict(d), w.exitcode))
    manager.shutdown()
