// Package messaging is the plumbing every bounded context shares: the
// envelope every message travels in, the message bus that dispatches
// commands and events to handlers (the book's messagebus.handle), the
// transport interfaces brokers implement, the transactional outbox relay,
// and the consumer that feeds broker deliveries to the bus with
// de-duplication (the inbox) and dead-lettering.
//
// Delivery is at least once end to end: the outbox keeps a message until a
// transport confirmed it, transports redeliver until a handler succeeded,
// and handlers that change state record the message id in the same
// transaction (the inbox), so a redelivered message is applied once.
package messaging
