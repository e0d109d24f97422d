// Package store holds the platform's durable state that is not a grain's own: tenant-scoped key/value
// buckets on JetStream KV (the seed's KV CONFIG and CACHE), the per-tenant SQLite read models (the
// seed's D1), and the LEDGER event stream with the projector that writes it into SQLite.
//
// Every entry point takes a tenant ID and checks it against ^[a-z0-9-]{1,63}$ before it reaches a
// NATS subject, a KV key or a file path, so one tenant's ID can never name another tenant's data.
package store
