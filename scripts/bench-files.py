#!/usr/bin/env python3
"""Helper for scripts/bench.sh: file loops that are not dominated by process
spawning.

  bench-files.py files DIR COUNT SIZE   create+write+close COUNT files of SIZE
                                        bytes in DIR; prints elapsed seconds
  bench-files.py tree DIR DIRS FILES    DIRS directories x FILES empty files
                                        (fixture for find / ls -lR, untimed)
  bench-files.py flat DIR COUNT SIZE    COUNT files of SIZE bytes in DIR
                                        (fixture uploaded as S3 objects, untimed)
  bench-files.py free-port              a free TCP port on 127.0.0.1

Events part (output latency; all times are time.time(), one clock for all
processes):
  bench-files.py writes DIR COUNT SIZE TIMES
      create+write+close COUNT files f000000… of SIZE bytes in DIR; writes
      "NAME CLOSE_TIME" per file to TIMES (the time right after close
      returned); prints "START END" (before the first open, after the last
      close)
  bench-files.py observe DIR COUNT OUT IDLE
      watch DIR (inotify, IN_CLOSE_WRITE | IN_MOVED_TO: a complete file
      written in place, or renamed into place) for the names f000000… of
      COUNT files; prints "ready" once the watch is set, writes "NAME TIME"
      (the first time each name was seen) to OUT; exits 0 when all were seen,
      3 when IDLE seconds passed without a new one (or the queue overflowed)
  bench-files.py latency TIMES OUT START END
      prints "WRITE_S SPAN_S SEEN P50_MS P99_MS MAX_MS": writer time; first
      write to last output; outputs seen; latency close -> output seen
      (nearest-rank percentiles; "-" when nothing was seen)
"""
import ctypes
import math
import os
import select
import socket
import struct
import sys
import time


def files(d, count, size):
    os.makedirs(d, exist_ok=True)
    buf = b"x" * size
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    t0 = time.perf_counter()
    for i in range(count):
        fd = os.open(f"{d}/f{i:06d}", flags, 0o644)
        try:
            os.write(fd, buf)
        finally:
            os.close(fd)
    print(f"{time.perf_counter() - t0:.6f}")


def tree(d, dirs, per_dir):
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for i in range(dirs):
        sub = f"{d}/d{i:05d}"
        os.makedirs(sub, exist_ok=True)
        for j in range(per_dir):
            os.close(os.open(f"{sub}/f{j:05d}", flags, 0o644))


def flat(d, count, size):
    os.makedirs(d, exist_ok=True)
    buf = b"x" * size
    for i in range(count):
        with open(f"{d}/o{i:06d}", "wb") as f:
            f.write(buf)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def writes(d, count, size, times_path):
    os.makedirs(d, exist_ok=True)
    buf = b"x" * size
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    closed = [0.0] * count
    start = time.time()
    for i in range(count):
        fd = os.open(f"{d}/f{i:06d}", flags, 0o644)
        try:
            os.write(fd, buf)
        finally:
            os.close(fd)
        closed[i] = time.time()
    end = time.time()
    with open(times_path, "w") as f:
        for i, t in enumerate(closed):
            f.write(f"f{i:06d} {t:.6f}\n")
    print(f"{start:.6f} {end:.6f}")


IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
IN_CLOEXEC = 0o2000000
EVENT = struct.Struct("iIII")


def observe(d, count, out_path, idle):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(IN_CLOEXEC)
    if fd < 0:
        sys.exit(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
    if libc.inotify_add_watch(fd, os.fsencode(d), IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
        sys.exit(f"inotify_add_watch {d}: {os.strerror(ctypes.get_errno())}")
    print("ready", flush=True)
    want = {f"f{i:06d}" for i in range(count)}
    seen = {}
    overflow = False
    last_new = time.monotonic()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(seen) < count and not overflow:
        left = idle - (time.monotonic() - last_new)
        if left <= 0:
            break
        if not poller.poll(int(left * 1000) + 1):
            continue
        buf = os.read(fd, 1 << 20)
        now = time.time()
        off = 0
        while off < len(buf):
            _, mask, _, n = EVENT.unpack_from(buf, off)
            name = buf[off + EVENT.size:off + EVENT.size + n].split(b"\0", 1)[0].decode("utf-8", "replace")
            off += EVENT.size + n
            if mask & IN_Q_OVERFLOW:
                overflow = True
            elif name in want and name not in seen:
                seen[name] = now
                last_new = time.monotonic()
    with open(out_path, "w") as f:
        for name, t in seen.items():
            f.write(f"{name} {t:.6f}\n")
    if overflow:
        print("inotify queue overflow: some outputs were not seen", file=sys.stderr)
    sys.exit(0 if len(seen) == count else 3)


def read_times(path):
    with open(path) as f:
        return {name: float(t) for name, t in (line.split() for line in f if line.strip())}


def latency(times_path, out_path, start, end):
    closed = read_times(times_path)
    seen = read_times(out_path)
    lat = sorted((seen[n] - closed[n]) * 1000 for n in seen if n in closed)

    def pct(p):
        return f"{lat[max(0, math.ceil(p / 100 * len(lat)) - 1)]:.3f}" if lat else "-"

    span = f"{max(seen.values()) - start:.6f}" if seen else "-"
    print(f"{end - start:.6f} {span} {len(lat)} {pct(50)} {pct(99)} {pct(100)}")


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "files":
        files(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "tree":
        tree(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "flat":
        flat(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 6 and sys.argv[1] == "writes":
        writes(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) == 6 and sys.argv[1] == "observe":
        observe(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    elif len(sys.argv) == 6 and sys.argv[1] == "latency":
        latency(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    elif len(sys.argv) == 2 and sys.argv[1] == "free-port":
        free_port()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
