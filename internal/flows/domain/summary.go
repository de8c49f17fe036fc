package domain

import "time"

// Flow is a flow at a glance, as a list of recent flows shows it: the
// message that started it, the order and customer it concerns, when it
// ran, how many messages it counts, and whether a handler gave one up.
type Flow struct {
	CorrelationID string `json:"correlation_id"`
	// FirstMessage, FirstChannel and Producer name the flow's first
	// message and who raised it (empty: from outside stockflow).
	FirstMessage string `json:"first_message"`
	FirstChannel string `json:"first_channel"`
	Producer     string `json:"producer,omitempty"`
	// Order and Customer are those its messages name (the least, when
	// they name several).
	Order    string    `json:"orderid,omitempty"`
	Customer string    `json:"customer,omitempty"`
	Started  time.Time `json:"started"`
	Last     time.Time `json:"last"`
	Messages int       `json:"messages"`
	Failed   bool      `json:"failed"`
}

// Traffic is what went from a producer over a channel to a consuming
// service in a while: the messages journaled, and what the consumer did
// with them. Consumer is empty for the messages no service has handled.
type Traffic struct {
	Producer string `json:"producer"`
	Channel  string `json:"channel"`
	Consumer string `json:"consumer"`
	// Messages are the messages journaled; Handled, DeadLettered those
	// the consumer handled or gave up on; Duplicates the deliveries its
	// inbox skipped.
	Messages     int `json:"messages"`
	Handled      int `json:"handled"`
	Duplicates   int `json:"duplicates"`
	DeadLettered int `json:"dead_lettered"`
}
