"""A threaded numpy computation for the soak suite (issue 19).

numjob.py SEED [ITERS]: builds a 5000 x 5000 float64 state S (200 MB) from
SEED, then, iteration k, replaces the 500-row block k mod 10 of S by
tanh(block @ W) @ V (W 5000 x 256, V 256 x 5000: two OpenBLAS matrix products,
run by OPENBLAS_NUM_THREADS threads), and prints "iter k". With ITERS it stops
after ITERS iterations; without, after the first iteration that finds a file
named "stop" in its working directory. Then it prints "done K SHA" (K
iterations, SHA the SHA-256 of S's bytes) and exits: a run moved between
nodes and an unmoved run of the same SEED and K must print the same SHA.
"""
import hashlib
import os
import sys

import numpy as np

seed = int(sys.argv[1])
iters = int(sys.argv[2]) if len(sys.argv) > 2 else None
n, rows, inner = 5000, 500, 256
rng = np.random.default_rng(seed)
S = rng.standard_normal((n, n))
W = rng.standard_normal((n, inner)) / np.sqrt(n)
V = rng.standard_normal((inner, n)) / np.sqrt(inner)
print("ready", flush=True)
k = 0
while True:
    if iters is not None and k >= iters:
        break
    if iters is None and os.path.exists("stop"):
        break
    r = (k % (n // rows)) * rows
    S[r:r + rows] = np.tanh(S[r:r + rows] @ W) @ V
    k += 1
    print("iter", k, flush=True)
print("done", k, hashlib.sha256(S.tobytes()).hexdigest(), flush=True)
