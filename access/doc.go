// Package access is who may do what on a node's API, and the certificates
// that say who is who: the caller of each request, authenticated from its
// mutual-TLS certificate (Authenticate); the per-route authorization, by the
// role a route needs and the record it names (Admit, Visible, Authorize);
// the node's own certificate, made, joined or renewed (Setup, RenewLoop);
// join tokens, users' certificates and their registry, revocation
// (CreateToken, AddUser, Join, Renew, Revoke); and the audit of refused
// requests (Audit).
//
// Why not in package pki: pki is the certificate primitives, standard library
// crypto only, with no notion of a cluster's state or of HTTP: a CA, issuing,
// identities in subjects, tokens, TLS configs, a pinned join (PinnedTLS).
// access is the policy built on them: it reads and writes the cluster's
// records (pidtable: tokens, users, revocations, jobs, the balancer's
// leader), speaks the API's errors (package api), and decides requests.
// Those that need only a certificate went to pki (PinnedTLS, NodeAddrs,
// ValidNodeName); those that need the table or a request are here.
//
// The agent wires it: it calls Setup before it connects to etcd, makes a
// Control with New once the store is there (Config: the node's name, its
// credentials, the store, its event log, and the few answers admission needs
// of what the agent owns: drains, checkpoints, services, migrations), calls
// Start, runs Loops, and serves the routes' handlers as thin adapters (decode,
// call, encode). access does not import the agent.
//
// Behind --insecure there are no certificates: Node is nil, the identity
// headers are believed (Authenticate), nothing is revoked or audited, and
// the certificate calls answer that the node has no CA.
package access
