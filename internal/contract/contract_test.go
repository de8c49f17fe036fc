package contract

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stockflow/stockflow/internal/allocation"
	allocationsvc "github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/crm"
	crmsvc "github.com/stockflow/stockflow/internal/crm/service"
	"github.com/stockflow/stockflow/internal/flows"
	flowssvc "github.com/stockflow/stockflow/internal/flows/service"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/notifications"
	notificationssvc "github.com/stockflow/stockflow/internal/notifications/service"
	"github.com/stockflow/stockflow/internal/orders"
	orderssvc "github.com/stockflow/stockflow/internal/orders/service"
	"github.com/stockflow/stockflow/internal/warehouse"
	warehousesvc "github.com/stockflow/stockflow/internal/warehouse/service"
)

// docPath is the contract, from this package's directory.
const docPath = "../../docs/asyncapi.json"

// domainServices are the services of the shop: the names their
// operations are tagged with, the channels they consume, and the
// registries of their messages.
var domainServices = []service{
	{allocation.Name, allocationsvc.Inbound, allocationsvc.Messages},
	{orders.Name, orderssvc.Inbound, orderssvc.Messages},
	{warehouse.Name, warehousesvc.Inbound, warehousesvc.Messages},
	{crm.Name, crmsvc.Inbound, crmsvc.Messages},
	{notifications.Name, notificationssvc.Inbound, notificationssvc.Messages},
}

type service struct {
	name     string
	inbound  []string
	messages func() *messaging.Registry
}

// services are every service: the shop's, and the flows service, which
// journals every channel of theirs.
var services = append(domainServices, service{flows.Name, flowsInbound(), flowsMessages})

// flowsMessages is the flows service's registry: every channel of the
// other services, the receipts and the dead letters, as the stockflow
// command wires it.
func flowsMessages() *messaging.Registry {
	regs := map[string]*messaging.Registry{}
	inbound := map[string][]string{}
	for _, s := range domainServices {
		regs[s.name], inbound[s.name] = s.messages(), s.inbound
	}
	channels, _ := flows.Producers(regs, inbound)
	return flowssvc.Registry(channels)
}

func flowsInbound() []string { return flowsMessages().Channels() }

// loadDocument reads and parses the contract.
func loadDocument(t testing.TB) *Document {
	t.Helper()
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("reading the contract: %v", err)
	}
	doc, err := ParseDocument(data)
	if err != nil {
		t.Fatalf("%s is not a well-formed AsyncAPI 3 document:\n%v", docPath, err)
	}
	return doc
}

// TestDocumentParties checks that every operation is performed by one of
// the services, or by a system outside stockflow.
func TestDocumentParties(t *testing.T) {
	doc := loadDocument(t)
	known := []string{Outside}
	for _, s := range services {
		known = append(known, s.name)
	}
	for _, op := range doc.Operations {
		if !slices.Contains(known, op.Party) {
			t.Errorf("operation %s is tagged %q, which is neither a service (%v) nor %q", op.ID, op.Party, known[1:], Outside)
		}
	}
	for _, s := range services {
		if len(doc.Select(s.name, "")) == 0 {
			t.Errorf("the document has no operation of the %s service", s.name)
		}
	}
}

// TestInboundIsReceived checks the document against the channels each
// service consumes: a receive operation of the service for each of its
// Inbound channels, and no other receive operation of the service.
func TestInboundIsReceived(t *testing.T) {
	doc := loadDocument(t)
	for _, s := range services {
		for _, ch := range s.inbound {
			if _, ok := doc.Find(s.name, Receive, ch); !ok {
				t.Errorf("%s consumes channel %s (its Inbound), but the document has no receive operation of %s on %s", s.name, ch, s.name, ch)
			}
		}
		for _, op := range doc.Select(s.name, Receive) {
			if !slices.Contains(s.inbound, op.Channel) {
				t.Errorf("operation %s has %s receive on channel %s, which is not among its Inbound channels %v", op.ID, s.name, op.Channel, s.inbound)
			}
		}
	}
}

// TestEveryChannelFlows checks that whatever is received is sent by
// someone, and whatever is sent is received by someone.
func TestEveryChannelFlows(t *testing.T) {
	doc := loadDocument(t)
	for _, addr := range sortedKeys(doc.Channels) {
		var senders, receivers int
		for _, op := range doc.Operations {
			if op.Channel != addr {
				continue
			}
			if op.Action == Send {
				senders++
			} else {
				receivers++
			}
		}
		if senders == 0 {
			t.Errorf("channel %s is received, but nobody sends on it", addr)
		}
		if receivers == 0 {
			t.Errorf("channel %s is sent, but nobody receives it", addr)
		}
	}
}

// TestConsumersReadTheExamples checks the receiving side against the
// document: every message a service receives has examples (ParseDocument
// checked them against the schema), and the service reads each of them:
// its registry decodes it, and it passes the message's own validation.
// This covers the messages that come from outside stockflow too, which
// no service sends.
func TestConsumersReadTheExamples(t *testing.T) {
	doc := loadDocument(t)
	for _, s := range services {
		reg := s.messages()
		for _, op := range doc.Select(s.name, Receive) {
			for _, m := range op.Messages {
				if len(m.Examples) == 0 {
					t.Errorf("%s receives %s on %s, which has no example to check that it reads it", s.name, m.Ref, op.Channel)
				}
				for i, ex := range m.Examples {
					payload, err := json.Marshal(ex)
					if err != nil {
						t.Fatal(err)
					}
					msg, err := reg.Decode(messaging.Envelope{ID: messaging.NewID(), Channel: op.Channel, Payload: payload})
					if err == nil {
						if v, ok := msg.(interface{ Validate() error }); ok {
							err = v.Validate()
						}
					}
					if err != nil {
						t.Errorf("%s cannot read example %d of %s on %s, which conforms to the document: %v\n\tpayload: %s", s.name, i, m.Ref, op.Channel, err, payload)
					}
				}
			}
		}
	}
}

// TestOwnTimersAreMarked checks the document's convention for a message a
// service sends to itself (a durable timer): the service both sends and
// receives on its channel, and the message's description says that it is
// a durable timer, published when due, so that nobody takes it for news
// to hand on at once.
func TestOwnTimersAreMarked(t *testing.T) {
	doc := loadDocument(t)
	for _, op := range doc.Select("", Send) {
		if _, ok := doc.Find(op.Party, Receive, op.Channel); !ok || op.Party == Outside || op.Party == flows.Name {
			continue // the flows service receives every channel, its own dead letters too
		}
		for _, m := range op.Messages {
			v, err := doc.Validator.Resolve(m.Ref)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := v.(map[string]any)
			if ref, ok := msg["$ref"].(string); ok {
				if v, err = doc.Validator.Resolve(ref); err != nil {
					t.Fatal(err)
				}
				msg, _ = v.(map[string]any)
			}
			desc, _ := msg["description"].(string)
			if !strings.Contains(desc, "durable timer: published when due") {
				t.Errorf("%s sends %s to itself on %s, but its description does not say it is a durable timer (\"durable timer: published when due\"): %q", op.Party, m.Ref, op.Channel, desc)
			}
		}
	}
}
