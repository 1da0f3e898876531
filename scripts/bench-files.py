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
"""
import os
import socket
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


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "files":
        files(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "tree":
        tree(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "flat":
        flat(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 2 and sys.argv[1] == "free-port":
        free_port()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
