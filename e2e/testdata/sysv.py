#!/usr/bin/env python3
"""Keeps a counter in a SysV shared memory segment, guarded by a SysV
semaphore, and prints it every PERIOD seconds: after a migration the counter
must continue from the segment's value (a fresh segment would start at 0)."""
import ctypes
import sys
import time

period = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
IPC_CREAT = 0o1000


class Sembuf(ctypes.Structure):
    _fields_ = [("num", ctypes.c_ushort), ("op", ctypes.c_short), ("flg", ctypes.c_short)]


shmid = libc.shmget(0x55510, 4096, IPC_CREAT | 0o600)
semid = libc.semget(0x55511, 1, IPC_CREAT | 0o600)
if shmid < 0 or semid < 0:
    sys.exit(f"shmget/semget: errno {ctypes.get_errno()}")
counter = ctypes.c_uint64.from_address(libc.shmat(shmid, None, 0))
up, down = Sembuf(0, 1, 0), Sembuf(0, -1, 0)
libc.semop(semid, ctypes.byref(up), 1)  # the semaphore starts at 1: a mutex
while True:
    libc.semop(semid, ctypes.byref(down), 1)
    counter.value += 1
    v = counter.value
    libc.semop(semid, ctypes.byref(up), 1)
    print(f"shm {v}", flush=True)
    time.sleep(period)
