// Package api is the agent's HTTP API: request and response types, error codes,
// and a client. Any agent answers any request; requests about a gpid owned by
// another node are forwarded by the agent to the owner, so a client needs one
// endpoint only.
//
//	POST /v1/procs                      RunRequest -> RunResponse (spawn a job)
//	GET  /v1/procs[?user=U&exited=1]    -> []ProcInfo (one etcd snapshot)
//	GET  /v1/procs/{gpid}               -> ProcInfo
//	POST /v1/procs/{gpid}/signal        SignalRequest
//	GET  /v1/procs/{gpid}/logs?follow=1&offset=N   framed stream (package joblog)
//	GET  /v1/procs/{gpid}/wait          -> ExitStatus once the job ended
//	GET  /v1/nodes                      -> []NodeInfo
//	GET  /v1/healthz                    -> 200 when the agent serves
//
// Errors are JSON {"error": "...", "code": "..."} with a matching HTTP status;
// the client turns them into *Error values whose Code can be compared.
package api
