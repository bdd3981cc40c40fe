"""An SQLite writer: back-to-back transactions of 500 rows (issue 19).

sqlwriter.py MODE: MODE is the journal mode (wal or delete). It writes
rows.db in its working directory and prints the number of committed rows
after every commit, for ever.
"""
import sqlite3
import sys

db = sqlite3.connect("rows.db", isolation_level=None)
db.execute("PRAGMA journal_mode=" + sys.argv[1])
db.execute("CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, v TEXT)")
n = db.execute("SELECT count(*) FROM t").fetchone()[0]
while True:
    db.execute("BEGIN")
    for _ in range(500):
        db.execute("INSERT INTO t (v) VALUES (?)", ("row %d of a transaction" % n,))
        n += 1
    db.execute("COMMIT")
    print(n, flush=True)
