"""A job that holds a file lock and writes under it (issue 19's lock holder).

locker.py KIND [late]: KIND is posix (lockf), ofd (open file description
lock), flock or lease. It locks locked.db in its working directory, then
appends 0, 1, 2, ... to it and prints each number, every 10 ms, for ever. A
lease is taken on another file, lease.db, opened read-only (a read lease needs
a file nobody has open for writing, and a write lease would break on the
test's every read of locked.db). With "late" it
writes unlocked until the file lock-now appears, and only then takes the
lock.
"""
import fcntl
import os
import struct
import sys
import time

kind = sys.argv[1]
f = open("locked.db", "a")
i = 0
while sys.argv[2:] == ["late"] and not os.path.exists("lock-now"):
    f.write("%d\n" % i)
    f.flush()
    i += 1
    time.sleep(0.01)
if kind == "posix":
    fcntl.lockf(f, fcntl.LOCK_EX)
elif kind == "flock":
    fcntl.flock(f, fcntl.LOCK_EX)
elif kind == "lease":
    open("lease.db", "a").close()
    leased = open("lease.db", "r")
    fcntl.fcntl(leased, fcntl.F_SETLEASE, fcntl.F_RDLCK)
elif kind == "ofd":
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks).
    fcntl.fcntl(f, fcntl.F_OFD_SETLKW, struct.pack("hhqqii", fcntl.F_WRLCK, 0, 0, 0, 0, 0))
else:
    sys.exit("kind must be posix, ofd or flock")
print("locked", kind, flush=True)
while True:
    f.write("%d\n" % i)
    f.flush()
    print(i, flush=True)
    i += 1
    time.sleep(0.01)
