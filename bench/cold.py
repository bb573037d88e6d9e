#!/usr/bin/env python3
"""Cold dump and restore through the CLI, side by side with their floors.

Run by bench/cold.sh (which builds what it needs). Each run, for each size:

  1. a fresh subject (bench/programs/distinct) fills SIZE of private memory,
     every 8-byte word distinct;
  2. with the subject alive, as the dump will meet the machine, the read
     floor (`floors read`: process_vm_readv of the subject's memory into one
     reused buffer) and, after an untimed primer of the same, the write
     floor (`floors write`: the image's number of bytes into a fresh tmpfs
     file, removed again);
  3. `ckpt dump --pid P --image FILE` to a fresh file on /dev/shm (the
     dump kills the subject), timed from the CLI's start to its exit, with
     CKPT_TRACE for how long the tree was frozen and the write phase;
  4. the fill floor: `floors fill` maps fresh anonymous memory of the
     image's size, populates it (MADV_POPULATE_WRITE) and reads the image
     into it;
  5. `ckpt restore --image FILE --detach`, timed from the CLI's start to
     its exit (the tree is running then), with the restorer's peak RSS;
  6. the restored subject checks every word of its memory (SIGUSR1) and
     must report PASS, else the whole benchmark fails;
  7. a second fresh subject, and with it alive the pipe floor (`floors
     pipe | cat >/dev/null`: the image's number of bytes written into a
     pipe drained by cat), then the subject dumped to a pipe drained by
     `cat >/dev/null`.

Each floor runs in the memory conditions of the step it is the floor of.
That matters here: with a 1 GiB process alive, writing 1 GiB into a fresh
tmpfs file took 1.4-2.2 s; right after that process was killed, 0.5-1.0 s
(the same binary, one after the other, three times each), so a write floor
timed after the dump had killed its subject looked twice as fast as the
conditions the dump itself met. What was freed just before counts too: at
4 GiB a write floor timed 3 s after the subject filled its memory took
7.6-8.7 s, and the dump that followed it (reusing what the floor had
freed) 3.7-4.3 s. So the write floor is timed after a primer (the same
write, removed), and the dump after the floor: both write into memory
freed one settle before.

Before each timed step the script waits --settle seconds (3): this VM
gives memory left free for about 2 s back to its host, and a step that
reused what the step before had just freed would meet warm memory where
the others meet cold. One warm-up run, then RUNS measured ones; the report gives median, min
and max of each, and ratios of medians to the floors.

  cold.py --ckpt PATH --distinct PATH --floors PATH [--sizes 1024,4096] [--runs 5]
"""

import argparse
import ctypes
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36
SHM = "/dev/shm"


class BenchError(Exception):
    pass


def run_timed(argv, env=None, stdout=subprocess.DEVNULL):
    """Runs argv; returns (wall seconds, stderr text, peak RSS in KiB)."""
    err = tempfile.TemporaryFile()
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=err, close_fds=True)
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    text = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({proc.returncode}): {text.strip()}")
    return wall, text, rusage.ru_maxrss


def trace_ms(text, name):
    m = re.search(r"ckpt trace: " + re.escape(name) + r"\s+([0-9.]+) ms", text)
    return float(m.group(1)) / 1e3 if m else float("nan")


def start_subject(distinct, mib, result):
    proc = subprocess.Popen([distinct, str(mib), result], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, close_fds=True)
    line = proc.stdout.readline().decode()
    if not line.startswith("READY"):
        proc.kill()
        proc.wait()
        raise BenchError(f"subject of {mib} MiB did not start: {line!r}")
    proc.stdout.close()
    return proc


def wait_gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.001)
    if os.path.exists(f"/proc/{pid}"):
        raise BenchError(f"pid {pid} still exists")


def verify(pid, result, timeout=60.0):
    try:
        os.unlink(result)
    except FileNotFoundError:
        pass
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not os.path.exists(result):
        if time.monotonic() > deadline:
            raise BenchError(f"restored pid {pid} did not report its check")
        time.sleep(0.005)
    with open(result) as f:
        verdict = f.read().strip()
    if not verdict.startswith("PASS"):
        raise BenchError(f"restored pid {pid}: {verdict}")
    return verdict


def one_run(a, mib):
    tag = f"cold-{os.getpid()}-{mib}"
    image = os.path.join(SHM, tag + ".img")
    floor_file = os.path.join(SHM, tag + ".floor")
    result = os.path.join(SHM, tag + ".result")
    env = dict(os.environ, CKPT_TRACE="1")
    out = {}
    for path in (image, floor_file):
        if os.path.exists(path):
            os.unlink(path)
    subject = start_subject(a.distinct, mib, result)
    time.sleep(a.settle)
    try:
        # The floors of the dump, in the dump's conditions: the subject alive,
        # and the pages written meeting memory freed a settle before (the
        # dump meets what the floor freed; the floor, what a primer freed).
        out["read floor"] = float(subprocess.run([a.floors, "read", str(subject.pid)],
                                                 capture_output=True, check=True).stdout)
        subprocess.run([a.floors, "write", floor_file, str(mib + 1)], capture_output=True, check=True)
        os.unlink(floor_file)
        time.sleep(a.settle)
        out["write floor"] = float(subprocess.run([a.floors, "write", floor_file, str(mib + 1)],
                                                  capture_output=True, check=True).stdout)
        os.unlink(floor_file)
        time.sleep(a.settle)
        out["dump"], text, _ = run_timed([a.ckpt, "dump", "--pid", str(subject.pid), "--image", image], env)
    finally:
        if subject.poll() is None:
            subject.kill()
        subject.wait()
    out["frozen"] = trace_ms(text, "dump: tree frozen")
    out["dump write"] = trace_ms(text, "dump: write")
    image_bytes = os.path.getsize(image)
    out["image MiB"] = image_bytes / 2**20
    time.sleep(a.settle)
    out["fill floor"] = float(subprocess.run([a.floors, "fill", image], capture_output=True,
                                             check=True).stdout)
    wait_gone(subject.pid)
    time.sleep(a.settle)
    out["restore"], text, rss = run_timed([a.ckpt, "restore", "--image", image, "--detach"], env)
    out["restore mm"] = trace_ms(text, "restore: mm")
    out["restore RSS MiB"] = rss / 1024
    try:
        verify(subject.pid, result)
    finally:
        try:
            os.kill(subject.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(subject.pid)
        os.unlink(image)
        if os.path.exists(result):
            os.unlink(result)
    # To a pipe drained by cat.
    subject = start_subject(a.distinct, mib, result)
    time.sleep(a.settle)
    try:
        floor = subprocess.run(f"{a.floors} pipe {mib + 1} | cat >/dev/null", shell=True,
                               stderr=subprocess.PIPE, check=True)
        out["pipe floor"] = float(floor.stderr)
        time.sleep(a.settle)
        t0 = time.monotonic()
        pipe = subprocess.run(f"{a.ckpt} dump --pid {subject.pid} --image - | cat >/dev/null",
                              shell=True, env=env, stderr=subprocess.PIPE)
        out["dump to pipe"] = time.monotonic() - t0
        if pipe.returncode != 0:
            raise BenchError(f"dump to a pipe failed: {pipe.stderr.decode().strip()}")
    finally:
        if subject.poll() is None:
            subject.kill()
        subject.wait()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--distinct", required=True)
    p.add_argument("--floors", required=True)
    p.add_argument("--sizes", default="1024,4096")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to wait before each timed step, so that every one meets memory as "
                        "cold as the others (this VM gives memory free for ~2 s back to its host)")
    a = p.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("cold.py: PR_SET_CHILD_SUBREAPER failed")
    sizes = [int(s) for s in a.sizes.split(",")]
    results = {m: [] for m in sizes}
    for run in range(a.runs + 1):
        for mib in sizes:
            r = one_run(a, mib)
            label = "warm-up" if run == 0 else f"run {run}"
            print(f"# {mib} MiB {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
            if run > 0:
                results[mib].append(r)
    keys = ["dump", "frozen", "dump write", "read floor", "write floor", "dump to pipe", "pipe floor",
            "restore", "restore mm", "fill floor", "restore RSS MiB"]
    print()
    print(f"Medians of {a.runs} cold runs (after one warm-up), [min - max]; seconds unless marked.")
    print()
    print("| size | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for mib in sizes:
        cells = []
        for k in keys:
            v = [r[k] for r in results[mib]]
            cells.append(f"{statistics.median(v):.3f} [{min(v):.3f}-{max(v):.3f}]")
        print(f"| {mib} MiB | " + " | ".join(cells) + " |")
    print()
    print("| size | dump / write floor | pipe / pipe floor | restore / fill floor | dump GB/s | "
          "pipe GB/s | pipe floor GB/s | restore GB/s |")
    print("|---|---|---|---|---|---|---|---|")
    for mib in sizes:
        med = {k: statistics.median([r[k] for r in results[mib]]) for k in keys + ["image MiB"]}
        gb = med["image MiB"] * 2**20 / 1e9
        print(f"| {mib} MiB | {med['dump'] / med['write floor']:.2f}x | "
              f"{med['dump to pipe'] / med['pipe floor']:.2f}x | "
              f"{med['restore'] / med['fill floor']:.2f}x | {gb / med['dump']:.2f} | "
              f"{gb / med['dump to pipe']:.2f} | {gb / med['pipe floor']:.2f} | {gb / med['restore']:.2f} |")
    print()
    print("Every restored subject checked every word of its memory: PASS.")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        raise SystemExit(f"cold.py: {e}")
