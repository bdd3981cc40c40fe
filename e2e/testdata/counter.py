#!/usr/bin/env python3
"""A stateful job that checks its own continuity, for migration tests.

It fills MIB mebibytes with a pattern derived from a seed, then every PERIOD
seconds prints "tick N digest" where N counts up by one and digest is the
SHA-256 of the whole buffer, after first checking that the buffer still holds
the pattern. A restart would begin again at tick 1; a corrupted restore fails
the check and exits 3. With FILE, each tick line is also appended to FILE,
opened and closed at every tick (no file is open across a migration), so a
test can see what the job itself writes where. Usage:
counter.py [MIB] [PERIOD] [TICKS] [FILE]
"""
import hashlib
import sys
import time

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 16
period = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
ticks = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
out = sys.argv[4] if len(sys.argv) > 4 else None

block = hashlib.sha256(b"ssi-counter-seed").digest() * (1 << 15)  # 1 MiB
buf = bytearray(block * mib)
want = hashlib.sha256(buf).hexdigest()
for n in range(1, ticks + 1):
    got = hashlib.sha256(buf).hexdigest()
    if got != want:
        print(f"CORRUPT at tick {n}: {got} != {want}", flush=True)
        sys.exit(3)
    line = f"tick {n} {got[:16]}"
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    time.sleep(period)
