#!/usr/bin/env python3
"""Helper for scripts/bench.sh: file loops that are not dominated by process
spawning.

  bench-files.py files DIR COUNT SIZE   create+write+close COUNT files of SIZE
                                        bytes in DIR; prints elapsed seconds
  bench-files.py tree DIR DIRS FILES [AGE_S]
                                        DIRS directories x FILES empty files
                                        (fixture for find / ls -lR, untimed);
                                        with AGE_S, every file's and
                                        directory's mtime is AGE_S seconds ago
  bench-files.py flat DIR COUNT SIZE    COUNT files of SIZE bytes in DIR
                                        (fixture uploaded as S3 objects, untimed)
  bench-files.py free-port              a free TCP port on 127.0.0.1
  bench-files.py find-stat DIR          times find DIR -printf '%s %T@\\n' | wc -l
                                        (a walk with a stat per entry); prints
                                        "WALL_S CPU_S LINES" (CPU = user+sys of
                                        the pipeline)

S3 (boto3; keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, region in
AWS_DEFAULT_REGION, path-style requests):
  bench-files.py s3-put ENDPOINT BUCKET PREFIX COUNT SIZE BUDGET_S
      puts objects PREFIXo000000… of SIZE bytes (each its own content) with
      2 processes x 16 threads until COUNT are stored or BUDGET_S seconds
      passed; prints "STORED ELAPSED_S"
  bench-files.py s3-list ENDPOINT BUCKET PREFIX
      one full paginated ListObjectsV2 of PREFIX (1,000 keys a page); prints
      "WALL_S CPU_S KEYS" (CPU = this process's user+sys)

Events part (output latency; all times are time.time(), one clock for all
processes):
  bench-files.py writes DIR COUNT SIZE TIMES [GAP_MS]
      create+write+close COUNT files f000000… of SIZE bytes in DIR; writes
      "NAME CLOSE_TIME" per file to TIMES (the time right after close
      returned); prints "START END" (before the first open, after the last
      close); with GAP_MS, file i is opened GAP_MS x i ms after the start
      (one after another without a pause when the writer falls behind)
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
import resource
import select
import socket
import struct
import subprocess
import sys
import threading
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


def tree(d, dirs, per_dir, age=None):
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    then = time.time() - age if age is not None else None
    for i in range(dirs):
        sub = f"{d}/d{i:05d}"
        os.makedirs(sub, exist_ok=True)
        for j in range(per_dir):
            os.close(os.open(f"{sub}/f{j:05d}", flags, 0o644))
            if then is not None:
                os.utime(f"{sub}/f{j:05d}", (then, then))
        if then is not None:
            os.utime(sub, (then, then))
    if then is not None:
        os.utime(d, (then, then))


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


def writes(d, count, size, times_path, gap_ms=0.0):
    os.makedirs(d, exist_ok=True)
    buf = b"x" * size
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    closed = [0.0] * count
    start = time.time()
    for i in range(count):
        if gap_ms > 0:
            wait = start + i * gap_ms / 1000 - time.time()
            if wait > 0:
                time.sleep(wait)
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


def find_stat(d):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(["sh", "-c", 'find "$1" -printf \'%s %T@\\n\' | wc -l', "sh", d],
                         check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"{wall:.6f} {cpu:.6f} {out.strip()}")


def s3_client(endpoint, pool=10):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                      retries={"max_attempts": 5, "mode": "standard"}),
    )


def s3_put_part(endpoint, bucket, prefix, count, size, deadline, part, parts, threads, conn):
    """One process's share of s3-put: indices part, part+parts, …"""
    client = s3_client(endpoint, threads)
    lock = threading.Lock()
    state = {"next": part, "stored": 0, "error": None}

    def work():
        while True:
            with lock:
                i = state["next"]
                state["next"] += parts
                if i >= count or time.time() >= deadline or state["error"]:
                    return
            body = f"{i:06d}".encode().ljust(size, b".")[:size] if size else b""
            try:
                client.put_object(Bucket=bucket, Key=f"{prefix}o{i:06d}", Body=body)
            except Exception as e:  # reported once, the other threads stop
                with lock:
                    state["error"] = state["error"] or f"put {prefix}o{i:06d}: {e}"
                return
            with lock:
                state["stored"] += 1

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    conn.send((state["stored"], state["error"]))
    conn.close()


def s3_put(endpoint, bucket, prefix, count, size, budget):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parts, threads = 2, 16
    t0 = time.time()
    deadline = t0 + budget
    procs = []
    for part in range(parts):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=s3_put_part,
                        args=(endpoint, bucket, prefix, count, size, deadline, part, parts, threads, child))
        p.start()
        procs.append((p, parent))
    stored, errors = 0, []
    for p, parent in procs:
        try:
            n, err = parent.recv()
        except EOFError:
            n, err = 0, "a put process died"
        p.join()
        stored += n
        if err:
            errors.append(err)
    for err in errors:
        print(err, file=sys.stderr)
    print(f"{stored} {time.time() - t0:.3f}")
    if errors:
        sys.exit(1)


def s3_list(endpoint, bucket, prefix):
    client = s3_client(endpoint)
    c0 = time.process_time()
    t0 = time.perf_counter()
    keys = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += page.get("KeyCount", 0)
    print(f"{time.perf_counter() - t0:.6f} {time.process_time() - c0:.6f} {keys}")


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
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "tree":
        tree(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) == 6 else None)
    elif len(sys.argv) == 5 and sys.argv[1] == "flat":
        flat(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) in (6, 7) and sys.argv[1] == "writes":
        writes(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
               float(sys.argv[6]) if len(sys.argv) == 7 else 0.0)
    elif len(sys.argv) == 6 and sys.argv[1] == "observe":
        observe(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    elif len(sys.argv) == 6 and sys.argv[1] == "latency":
        latency(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    elif len(sys.argv) == 2 and sys.argv[1] == "free-port":
        free_port()
    elif len(sys.argv) == 3 and sys.argv[1] == "find-stat":
        find_stat(sys.argv[2])
    elif len(sys.argv) == 8 and sys.argv[1] == "s3-put":
        s3_put(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]))
    elif len(sys.argv) == 5 and sys.argv[1] == "s3-list":
        s3_list(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
