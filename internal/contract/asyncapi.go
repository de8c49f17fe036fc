package contract

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Outside is the tag of the operations of systems outside stockflow (the
// book's Redis integration, operators watching the dead letters).
const Outside = "outside"

// The actions of an operation.
const (
	Send    = "send"
	Receive = "receive"
)

// Document is an AsyncAPI 3.0.0 document, decoded and checked.
type Document struct {
	// Validator validates values against the document's schemas.
	Validator *Validator
	// Operations are the document's operations, sorted by ID.
	Operations []Operation
	// Channels maps each channel's address to its key in channels.
	Channels map[string]string
}

// Operation is one operation of the document: a service (or Outside)
// sending or receiving messages on a channel.
type Operation struct {
	// ID is the operation's key in operations.
	ID string
	// Action is Send or Receive.
	Action string
	// Party is the name of the operation's tag: a service, or Outside.
	Party string
	// Channel is the address of the operation's channel.
	Channel string
	// Messages are the messages the operation sends or receives.
	Messages []Message
}

// Message is a message of an operation.
type Message struct {
	// Ref is how the operation refers to it: "#/channels/c/messages/m".
	Ref string
	// Payload is the schema of its payload.
	Payload any
	// Examples are the payloads of the message's examples.
	Examples []any
}

// ParseDocument decodes an AsyncAPI document and checks that it is well
// formed as far as stockflow uses AsyncAPI:
//
//   - asyncapi is "3.0.0", and info has a title and a version;
//   - every $ref anywhere in it resolves within it;
//   - every channel has a unique address and at least one message, each
//     message a payload whose schema the Validator fully understands,
//     and examples whose payloads conform to it and declare every member;
//   - every operation has the action send or receive, one tag naming who
//     performs it, a $ref to a channel of channels, and $refs to messages
//     of that channel;
//   - no two operations share party, action and channel, and every
//     channel has at least one operation.
//
// The error lists every problem found.
func ParseDocument(data []byte) (*Document, error) {
	root, err := DecodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("asyncapi: %w", err)
	}
	p := &parser{doc: &Document{Validator: NewValidator(root), Channels: map[string]string{}}}
	p.parse(root)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return p.doc, nil
}

type parser struct {
	doc  *Document
	errs []error
}

func (p *parser) fail(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("asyncapi: "+format, args...))
}

func (p *parser) parse(root any) {
	top, ok := root.(map[string]any)
	if !ok {
		p.fail("the document is %s, not an object", jsonType(root))
		return
	}
	if v := top["asyncapi"]; v != "3.0.0" {
		p.fail("asyncapi is %s, want \"3.0.0\"", brief(v))
	}
	info, _ := top["info"].(map[string]any)
	for _, k := range []string{"title", "version"} {
		if s, _ := info[k].(string); s == "" {
			p.fail("info.%s is missing", k)
		}
	}
	p.checkRefs(root, "#")
	channels := p.object(top, "channels", "")
	used := map[string]bool{}
	for _, key := range sortedKeys(channels) {
		p.channel(key, channels[key])
	}
	seen := map[string]string{}
	operations := p.object(top, "operations", "")
	for _, id := range sortedKeys(operations) {
		op, ok := p.operation(id, operations[id])
		if !ok {
			continue
		}
		k := op.Party + " " + op.Action + " " + op.Channel
		if other, dup := seen[k]; dup {
			p.fail("operations %s and %s both have %s %s on %s", other, id, op.Party, op.Action, op.Channel)
		}
		seen[k] = id
		used[op.Channel] = true
		p.doc.Operations = append(p.doc.Operations, op)
	}
	for _, addr := range sortedKeys(p.doc.Channels) {
		if !used[addr] {
			p.fail("channel %s has no operation: nobody sends or receives on it", p.doc.Channels[addr])
		}
	}
}

// object returns the member k of m, which must be an object.
func (p *parser) object(m map[string]any, k, where string) map[string]any {
	v, ok := m[k].(map[string]any)
	if !ok {
		p.fail("%s%s is %s, not an object", where, k, jsonType(m[k]))
	}
	return v
}

// checkRefs checks that every $ref within v resolves.
func (p *parser) checkRefs(v any, path string) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if k == "$ref" {
				if s, ok := x[k].(string); !ok {
					p.fail("%s/$ref is %s, not a string", path, jsonType(x[k]))
				} else if _, err := p.doc.Validator.Resolve(s); err != nil {
					p.fail("%s: %v", path, err)
				}
				continue
			}
			p.checkRefs(x[k], path+"/"+escapePointer(k))
		}
	case []any:
		for i, e := range x {
			p.checkRefs(e, fmt.Sprintf("%s/%d", path, i))
		}
	}
}

// deref follows v's $ref, if it has one (a message may be one).
func (p *parser) deref(v any) any {
	for range maxDepth {
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return v
		}
		target, err := p.doc.Validator.Resolve(ref)
		if err != nil {
			return nil // checkRefs reports it
		}
		v = target
	}
	return nil
}

func (p *parser) channel(key string, v any) {
	ch, ok := v.(map[string]any)
	if !ok {
		p.fail("channel %s is %s, not an object", key, jsonType(v))
		return
	}
	addr, _ := ch["address"].(string)
	if addr == "" {
		p.fail("channel %s has no address", key)
		return
	}
	if other, dup := p.doc.Channels[addr]; dup {
		p.fail("channels %s and %s have the same address %s", other, key, addr)
		return
	}
	p.doc.Channels[addr] = key
	msgs, _ := ch["messages"].(map[string]any)
	if len(msgs) == 0 {
		p.fail("channel %s has no messages", key)
	}
	for _, name := range sortedKeys(msgs) {
		what := fmt.Sprintf("message %s of channel %s", name, key)
		m, err := p.message(msgs[name])
		if err != nil {
			p.fail("%s: %v", what, err)
			continue
		}
		bad := p.doc.Validator.CheckSchema(m.Payload)
		for _, v := range bad {
			p.fail("%s: payload schema: %s", what, v)
		}
		if len(bad) > 0 {
			continue
		}
		for i, ex := range m.Examples {
			for _, v := range p.doc.Validator.Validate(m.Payload, ex) {
				p.fail("%s: example %d: %s", what, i, v)
			}
			for _, path := range p.doc.Validator.Undeclared(m.Payload, ex) {
				p.fail("%s: example %d: member %s is not declared in the payload schema", what, i, path)
			}
		}
	}
}

// message returns the message v (a message object, or a $ref to one):
// its payload schema and its examples' payloads.
func (p *parser) message(v any) (Message, error) {
	m, ok := p.deref(v).(map[string]any)
	if !ok {
		return Message{}, errors.New("not a message object")
	}
	schema, ok := m["payload"]
	if !ok {
		return Message{}, errors.New("no payload")
	}
	msg := Message{Payload: schema}
	if exs, ok := m["examples"]; ok {
		list, ok := exs.([]any)
		if !ok {
			return Message{}, fmt.Errorf("examples is %s, not an array", jsonType(exs))
		}
		for i, ex := range list {
			e, _ := ex.(map[string]any)
			payload, ok := e["payload"]
			if !ok {
				return Message{}, fmt.Errorf("example %d has no payload", i)
			}
			msg.Examples = append(msg.Examples, payload)
		}
	}
	return msg, nil
}

func (p *parser) operation(id string, v any) (Operation, bool) {
	op := Operation{ID: id}
	m, ok := v.(map[string]any)
	if !ok {
		p.fail("operation %s is %s, not an object", id, jsonType(v))
		return op, false
	}
	ok = true
	if op.Action, _ = m["action"].(string); op.Action != Send && op.Action != Receive {
		p.fail("operation %s: action is %s, want \"send\" or \"receive\"", id, brief(m["action"]))
		ok = false
	}
	tags, _ := m["tags"].([]any)
	if len(tags) != 1 {
		p.fail("operation %s: want one tag naming the service (or %q) that performs it, got %d", id, Outside, len(tags))
		ok = false
	} else if tag, _ := p.deref(tags[0]).(map[string]any); tag == nil {
		p.fail("operation %s: its tag is not an object", id)
		ok = false
	} else if op.Party, _ = tag["name"].(string); op.Party == "" {
		p.fail("operation %s: its tag has no name", id)
		ok = false
	}
	chRef, _ := m["channel"].(map[string]any)
	ref, _ := chRef["$ref"].(string)
	key, found := strings.CutPrefix(ref, "#/channels/")
	if !found || strings.Contains(key, "/") {
		p.fail("operation %s: channel must be a $ref to #/channels/<name>, got %s", id, brief(m["channel"]))
		return op, false
	}
	key = strings.ReplaceAll(strings.ReplaceAll(key, "~1", "/"), "~0", "~")
	for addr, k := range p.doc.Channels {
		if k == key {
			op.Channel = addr
		}
	}
	if op.Channel == "" {
		p.fail("operation %s: channel %s is not among channels (or has no address)", id, key)
		return op, false
	}
	msgs, _ := m["messages"].([]any)
	if len(msgs) == 0 {
		p.fail("operation %s: no messages", id)
		ok = false
	}
	prefix := "#/channels/" + escapePointer(key) + "/messages/"
	for i, mv := range msgs {
		r, _ := mv.(map[string]any)
		mref, _ := r["$ref"].(string)
		if !strings.HasPrefix(mref, prefix) || strings.Contains(mref[len(prefix):], "/") {
			p.fail("operation %s: message %d must be a $ref to %s<name>, a message of its channel; got %s", id, i, prefix, brief(mv))
			ok = false
			continue
		}
		target, err := p.doc.Validator.Resolve(mref)
		if err != nil {
			ok = false
			continue // checkRefs reports it
		}
		msg, err := p.message(target)
		if err != nil {
			ok = false
			continue // channel reports it
		}
		msg.Ref = mref
		op.Messages = append(op.Messages, msg)
	}
	return op, ok
}

// Find returns the operation of party with action on the channel address.
func (d *Document) Find(party, action, channel string) (Operation, bool) {
	i := slices.IndexFunc(d.Operations, func(o Operation) bool {
		return o.Party == party && o.Action == action && o.Channel == channel
	})
	if i < 0 {
		return Operation{}, false
	}
	return d.Operations[i], true
}

// Select returns the operations of party (any, when "") with action (any,
// when ""), sorted by ID.
func (d *Document) Select(party, action string) []Operation {
	var out []Operation
	for _, o := range d.Operations {
		if (party == "" || o.Party == party) && (action == "" || o.Action == action) {
			out = append(out, o)
		}
	}
	return out
}

// Parties returns the names of every party with an operation, sorted.
func (d *Document) Parties() []string {
	var out []string
	for _, o := range d.Operations {
		if !slices.Contains(out, o.Party) {
			out = append(out, o.Party)
		}
	}
	slices.Sort(out)
	return out
}

// CheckPayload returns what is wrong with payload, a message sent or
// received by op: not JSON, conforming to the schema of none of op's
// messages, or carrying members the schema it conforms to does not
// declare. Nil when nothing is.
func (d *Document) CheckPayload(op Operation, payload []byte) []string {
	value, err := DecodeJSON(payload)
	if err != nil {
		return []string{fmt.Sprintf("payload is not JSON: %v", err)}
	}
	var broken []string
	for _, m := range op.Messages {
		bad := d.Validator.Validate(m.Payload, value)
		if len(bad) > 0 {
			for _, v := range bad {
				broken = append(broken, fmt.Sprintf("against %s: %s", m.Ref, v))
			}
			continue
		}
		var undeclared []string
		for _, path := range d.Validator.Undeclared(m.Payload, value) {
			undeclared = append(undeclared, fmt.Sprintf("member %s is not declared in the schema of %s", path, m.Ref))
		}
		return undeclared
	}
	return broken
}
