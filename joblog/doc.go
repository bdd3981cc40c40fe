// Package joblog defines the on-disk and on-the-wire format of a job's output.
//
// A job's stdout and stderr are kept in one append-only file of framed records,
// so that their relative order survives and any reader can resume at a byte offset
// without losing or repeating a byte (the property `ssi logs -f` and an attached
// `ssi run` rely on across agent restarts). A record is a 5-byte header, one byte of
// stream kind and a big-endian uint32 payload length, followed by the payload:
//
//	+--------+--------------------+-----------------+
//	| kind 1 | length 4 (BE u32)  | payload (length) |
//	+--------+--------------------+-----------------+
//
// Kinds 1 and 2 are stdout and stderr bytes. Kind 3 (Exit) only travels on the
// wire: the agent appends it after the last output record of a followed job, with a
// JSON api.ExitStatus payload. Kind 4 (Error) carries a message from the agent.
//
// Writers emit a whole record with a single write(2) on an O_APPEND file; readers
// only ever hand out complete records, so a record caught half-written is simply
// read again later.
package joblog
