// Package transport holds stockflow's brokers, each a leaf package behind
// messaging.Transport: they deliver, acknowledge and hand a message again
// when asked; everything else a consumer does (decoding, the inbox,
// retries, panics, dead letters) is messaging's consumer pipeline, the same
// for all of them.
//
//	inproc/        in-process, the embedded default
//	redis/         Redis pub/sub (the book's) and Redis Streams
//	nats/          NATS JetStream
//	kafka/         Kafka (franz-go)
//	chaos/         an in-memory broker that loses, repeats and reorders, for tests
//	broker/        opens the transport a URL names
//	transporttest/ the contract every transport passes, and its benchmarks
package transport
