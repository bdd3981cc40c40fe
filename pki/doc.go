// Package pki is the cluster's public-key infrastructure: the cluster CA, node
// and user certificates, join tokens, client config files and the TLS configs
// every listener and client of ssi uses. Standard library crypto only.
//
// Identities live in the certificate subject:
//
//	node:   CN=node:<name>, O=ssi:nodes   (ExtKeyUsage server + client)
//	user:   CN=<name>                     (ExtKeyUsage client)
//	admin:  CN=<name>, O=ssi:admins       (ExtKeyUsage client)
//
// The CA of a cluster is created by its first agent in <data-dir>/pki (ca.key
// mode 0600). Further agents join with a token made by CreateToken: it names
// the CA by the SHA-256 of its certificate, so a joiner pins the CA before it
// trusts anything the cluster says.
package pki
