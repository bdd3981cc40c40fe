// Package dashboard is the cluster's web UI, served by every agent under
// /ui/: the nodes with their live load, the process table (filter, sort), a
// job's log tail, a timeline of migrations split into their phases, and
// migrate-by-drag (a process row dropped on a node card migrates it), as
// openMosix's migmon had.
//
// The page (assets/, embedded with go:embed: plain HTML, CSS and JS, no CDN,
// no build step) polls JSON once a second. Its data comes from the agent's
// own API routes, reached through /ui/api/v1/...: the dashboard only
// authenticates the browser and hands the request to the same handlers, with
// the same role checks (package access) and the same visibility rule, that a
// CLI's request reaches. Only a short list of routes is open to the browser
// (listings, a job's logs, migrate, signal); nothing an admin does to the
// cluster (tokens, users, nodes) is.
//
// Authentication. The API is mutual TLS; a browser has no client
// certificate. A user who has one runs `ssi dashboard`: the agent (POST
// /v1/dashboard/logins, as that user) makes a login link with a random
// one-time token valid for LoginTTL. Opening it exchanges the token, once,
// for a session cookie (HttpOnly, Secure, SameSite=Strict, path /ui/) that
// acts as that user, with that user's role, for SessionTTL. Logins and
// sessions live in etcd under /ssi/dashboard/ (keyed by the SHA-256 of
// their token, on leases of their lifetime), so every agent can check a
// session and a logout or expiry holds cluster-wide; a session also dies
// when the certificate that made it is revoked (ssi user revoke).
//
// A cookie belongs to the host it was set by, so a request the agent
// answers with a redirect to another agent (a job's logs, a migration: they
// are served by the job's node) is relayed by the dashboard to that agent's
// /ui/api, carrying the browser's cookie and nothing else of the relaying
// agent's authority: the other agent checks the session itself.
package dashboard
