// Package messaging is the core every bounded context shares, small enough
// to read in one sitting; the brokers are leaves of their own
// (internal/transport).
//
//	envelope.go   the envelope every message travels in: id, channel, key,
//	              correlation and causation ids
//	registry.go   which message type travels on which channel
//	bus.go        the message bus: commands to one handler, events to all
//	              (the book's messagebus.handle)
//	uow.go        the unit of work: inbox, handler, aggregates, outbox and
//	              commit in one transaction, run again when it lost a race
//	receipt.go    the receipt a handling records in its transaction, for the
//	              journal (internal/flows)
//	outbox.go     the relay that publishes what the outbox holds, and
//	              durable timers when they are due
//	consumer.go   the consumer pipeline: decode, validate, recover panics,
//	              retry with backoff, dead letters, logs and metrics
//	transport.go  what a transport is (deliver, acknowledge, hand again),
//	              dead letters, the retry policy
//	runtime.go    what every service runs: relay, consumer, housekeeping
//	sqlite/, postgres/  the outbox, inbox and dead-letter tables
//
// Delivery is at least once end to end: the outbox keeps a message until a
// transport confirmed it, transports hand it again until the consumer took
// it, and the unit of work records the message id in the same transaction
// as its effects (the inbox), so a redelivered message is applied once.
package messaging
