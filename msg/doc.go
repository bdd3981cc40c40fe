// Package msg is the cluster's message broker: every agent runs an embedded
// NATS server (nats-server's Go package), clustered with the other agents'
// over their known addresses and the cluster's certificates, with JetStream
// for durable topics.
//
// Identity is the TLS client certificate (package pki): a user's certificate
// is their NATS identity, checked by a custom authenticator that registers
// the user with permissions confining them to their own subjects
// (Namespace). Durable topics are JetStream streams the agents create on a
// user's request (Service), named after their owner (StreamName), so users
// need no JetStream API rights of their own.
package msg
