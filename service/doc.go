// Package service runs services: programs described by systemd unit files
// (ssi apply web.service), kept at N replicas across the cluster's nodes.
//
// Four parts, each usable alone:
//
//   - Parse reads a .service unit (go-systemd's unit parser for the file,
//     SplitCommand for ExecStart='s systemd quoting and $VAR rules) into a
//     pidtable.ServiceSpec, with warnings (file:line) for what ssi ignores
//     and one error (file:line) for what it cannot accept.
//   - Plan is the reconciler as a pure function: a service, its status and
//     its replicas' records and the nodes in, the replicas to start and stop
//     and the next status out. It holds the rules: restart per Restart= with
//     exponential capped backoff, replacement of replicas on dead nodes,
//     Spread=, constraints, exact scaling, rolling updates.
//   - Controller runs Plan for every service on the watched caches of the
//     elected agent, writes each service's status (guarded by its leadership)
//     before it acts, and starts and stops replicas through a Runner (the
//     agent's, in production; a fake in tests).
//   - Requests carries out what users ask (ssi apply, services, service
//     status|scale|rm) without HTTP: the checks (a spec as ssi run checks a
//     request, who may run as whom, who owns a service: Admit), the desired
//     state written with compare-and-swap, the answers and events. The
//     agent's routes are thin handlers over it (agent/services.go): decode,
//     call, encode; ReplicaRequest and StopSignal say how the agent runs and
//     stops a replica the Controller asked for.
package service
