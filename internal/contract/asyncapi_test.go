package contract

import (
	"encoding/json"
	"strings"
	"testing"
)

// minimalDoc is a small well-formed document: a service sending on a
// channel that another receives.
const minimalDoc = `{
	"asyncapi": "3.0.0",
	"info": {"title": "t", "version": "1"},
	"channels": {
		"things": {
			"address": "thing_done",
			"messages": {"done": {"$ref": "#/components/messages/done"}}
		}
	},
	"operations": {
		"a_send": {"action": "send", "channel": {"$ref": "#/channels/things"}, "messages": [{"$ref": "#/channels/things/messages/done"}], "tags": [{"name": "a"}]},
		"b_receive": {"action": "receive", "channel": {"$ref": "#/channels/things"}, "messages": [{"$ref": "#/channels/things/messages/done"}], "tags": [{"name": "b"}]}
	},
	"components": {
		"schemas": {"Done": {"type": "object", "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}}, "required": ["id"]}},
		"messages": {"done": {"payload": {"$ref": "#/components/schemas/Done"}, "examples": [{"name": "one", "payload": {"id": 1}}]}}
	}
}`

// edit returns minimalDoc changed by fn.
func edit(t *testing.T, fn func(doc map[string]any)) []byte {
	t.Helper()
	doc := mustJSON(t, minimalDoc).(map[string]any)
	fn(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// at returns the object at the dotted path within doc.
func at(doc map[string]any, path string) map[string]any {
	cur := doc
	for k := range strings.SplitSeq(path, ".") {
		cur = cur[k].(map[string]any)
	}
	return cur
}

func TestParseDocument(t *testing.T) {
	tests := []struct {
		name string
		edit func(doc map[string]any)
		// want are pieces of the error, "" for none.
		want []string
	}{
		{"well formed", func(map[string]any) {}, nil},
		{"wrong version", func(d map[string]any) { d["asyncapi"] = "2.6.0" }, []string{`asyncapi is "2.6.0", want "3.0.0"`}},
		{"no version", func(d map[string]any) { delete(d, "asyncapi") }, []string{"asyncapi is null"}},
		{"no info title", func(d map[string]any) { delete(at(d, "info"), "title") }, []string{"info.title is missing"}},
		{"no channels", func(d map[string]any) { delete(d, "channels") }, []string{"channels is null, not an object"}},
		{"dangling $ref anywhere", func(d map[string]any) {
			at(d, "components.schemas.Done.properties")["x"] = map[string]any{"$ref": "#/components/schemas/Gone"}
		}, []string{`#/components/schemas/Done/properties/x: $ref "#/components/schemas/Gone" does not resolve`}},
		{"channel without address", func(d map[string]any) { delete(at(d, "channels.things"), "address") }, []string{"channel things has no address"}},
		{"duplicate address", func(d map[string]any) {
			at(d, "channels")["more"] = map[string]any{"address": "thing_done", "messages": map[string]any{}}
		}, []string{"channels more and things have the same address thing_done"}},
		{"channel without messages", func(d map[string]any) { delete(at(d, "channels.things"), "messages") }, []string{"channel things has no messages"}},
		{"message without payload", func(d map[string]any) { delete(at(d, "components.messages.done"), "payload") }, []string{"message done of channel things: no payload"}},
		{"payload schema the validator cannot check", func(d map[string]any) {
			at(d, "components.schemas.Done")["patternProperties"] = map[string]any{}
		}, []string{`message done of channel things: payload schema: /components/schemas/Done/patternProperties: schema keyword "patternProperties" is not supported`}},
		{"required member not among properties", func(d map[string]any) {
			at(d, "components.schemas.Done")["required"] = []any{"id", "ID"}
		}, []string{`required member "ID" is not among properties`}},
		{"example breaking the schema", func(d map[string]any) {
			at(d, "components.messages.done")["examples"] = []any{map[string]any{"payload": map[string]any{"id": "1"}}}
		}, []string{"message done of channel things: example 0: /id: is string"}},
		{"example with an undeclared member", func(d map[string]any) {
			at(d, "components.messages.done")["examples"] = []any{map[string]any{"payload": map[string]any{"id": 1, "x": 1}}}
		}, []string{"message done of channel things: example 0: member /x is not declared in the payload schema"}},
		{"example without payload", func(d map[string]any) {
			at(d, "components.messages.done")["examples"] = []any{map[string]any{"name": "n"}}
		}, []string{"message done of channel things: example 0 has no payload"}},
		{"examples not a list", func(d map[string]any) {
			at(d, "components.messages.done")["examples"] = map[string]any{}
		}, []string{"message done of channel things: examples is object, not an array"}},
		{"no examples", func(d map[string]any) { delete(at(d, "components.messages.done"), "examples") }, nil},
		{"unused channel", func(d map[string]any) {
			at(d, "channels")["idle"] = map[string]any{"address": "idle", "messages": map[string]any{"done": map[string]any{"$ref": "#/components/messages/done"}}}
		}, []string{"channel idle has no operation"}},
		{"bad action", func(d map[string]any) { at(d, "operations.a_send")["action"] = "publish" }, []string{`operation a_send: action is "publish"`}},
		{"no tag", func(d map[string]any) { delete(at(d, "operations.a_send"), "tags") }, []string{"operation a_send: want one tag", "got 0"}},
		{"two tags", func(d map[string]any) {
			at(d, "operations.a_send")["tags"] = []any{map[string]any{"name": "a"}, map[string]any{"name": "c"}}
		}, []string{"operation a_send: want one tag", "got 2"}},
		{"nameless tag", func(d map[string]any) { at(d, "operations.a_send")["tags"] = []any{map[string]any{}} }, []string{"operation a_send: its tag has no name"}},
		{"channel not a $ref", func(d map[string]any) { at(d, "operations.a_send")["channel"] = "things" }, []string{"operation a_send: channel must be a $ref to #/channels/<name>"}},
		{"channel $ref elsewhere", func(d map[string]any) {
			at(d, "operations.a_send")["channel"] = map[string]any{"$ref": "#/components/messages/done"}
		}, []string{"operation a_send: channel must be a $ref to #/channels/<name>"}},
		{"channel not found", func(d map[string]any) {
			at(d, "operations.a_send")["channel"] = map[string]any{"$ref": "#/channels/nope"}
		}, []string{`$ref "#/channels/nope" does not resolve`, "operation a_send: channel nope is not among channels"}},
		{"no messages", func(d map[string]any) { delete(at(d, "operations.a_send"), "messages") }, []string{"operation a_send: no messages"}},
		{"message of components, not of the channel", func(d map[string]any) {
			at(d, "operations.a_send")["messages"] = []any{map[string]any{"$ref": "#/components/messages/done"}}
		}, []string{"operation a_send: message 0 must be a $ref to #/channels/things/messages/<name>"}},
		{"message not found in the channel", func(d map[string]any) {
			at(d, "operations.a_send")["messages"] = []any{map[string]any{"$ref": "#/channels/things/messages/nope"}}
		}, []string{`$ref "#/channels/things/messages/nope" does not resolve`}},
		{"duplicate operation", func(d map[string]any) {
			at(d, "operations")["a_send_again"] = at(d, "operations.a_send")
		}, []string{"operations a_send and a_send_again both have a send on thing_done"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := ParseDocument(edit(t, tt.edit))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("ParseDocument: %v", err)
				}
				if len(doc.Operations) != 2 {
					t.Errorf("operations = %+v, want 2", doc.Operations)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseDocument succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := ParseDocument([]byte(`{"asyncapi": `)); err == nil {
		t.Error("ParseDocument(bad JSON) succeeded")
	}
	if _, err := ParseDocument([]byte(`[]`)); err == nil || !strings.Contains(err.Error(), "not an object") {
		t.Errorf("ParseDocument([]) = %v, want not an object", err)
	}
}

func TestDocumentLookups(t *testing.T) {
	doc, err := ParseDocument([]byte(minimalDoc))
	if err != nil {
		t.Fatal(err)
	}
	op, ok := doc.Find("a", Send, "thing_done")
	if !ok || op.ID != "a_send" || len(op.Messages) != 1 || op.Messages[0].Ref != "#/channels/things/messages/done" ||
		len(op.Messages[0].Examples) != 1 || brief(op.Messages[0].Examples[0]) != `{"id":1}` {
		t.Errorf("Find(a, send, thing_done) = %+v, %v", op, ok)
	}
	if _, ok := doc.Find("a", Receive, "thing_done"); ok {
		t.Error("Find(a, receive, thing_done) found an operation")
	}
	if _, ok := doc.Find("b", Receive, "things"); ok {
		t.Error("Find by the channel's key, not its address, found an operation")
	}
	if got := doc.Select("", Receive); len(got) != 1 || got[0].ID != "b_receive" {
		t.Errorf("Select(any, receive) = %+v", got)
	}
	if got := doc.Select("a", ""); len(got) != 1 || got[0].ID != "a_send" {
		t.Errorf("Select(a, any) = %+v", got)
	}
	if got := doc.Parties(); strings.Join(got, ",") != "a,b" {
		t.Errorf("Parties() = %q", got)
	}
	if doc.Channels["thing_done"] != "things" {
		t.Errorf("Channels = %v", doc.Channels)
	}
}

func TestCheckPayload(t *testing.T) {
	doc, err := ParseDocument([]byte(minimalDoc))
	if err != nil {
		t.Fatal(err)
	}
	op, _ := doc.Find("a", Send, "thing_done")
	tests := []struct {
		name    string
		payload string
		want    []string
	}{
		{"conforms", `{"id": 1, "at": "2026-01-02T03:04:05Z"}`, nil},
		{"not JSON", `{"id": `, []string{"payload is not JSON"}},
		{"breaks the schema", `{"id": "1"}`, []string{"against #/channels/things/messages/done: /id: is string \"1\", want integer"}},
		{"undeclared member", `{"id": 1, "extra": true}`, []string{"member /extra is not declared in the schema of #/channels/things/messages/done"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := doc.CheckPayload(op, []byte(tt.payload))
			if len(got) != len(tt.want) {
				t.Fatalf("CheckPayload(%s) = %q, want %q", tt.payload, got, tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestCheckPayloadOfSeveralMessages(t *testing.T) {
	// An operation of two messages takes a payload either conforms to.
	raw := edit(t, func(d map[string]any) {
		at(d, "components.schemas")["Other"] = map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}, "required": []any{"name"}}
		at(d, "components.messages")["other"] = map[string]any{"payload": map[string]any{"$ref": "#/components/schemas/Other"}}
		at(d, "channels.things.messages")["other"] = map[string]any{"$ref": "#/components/messages/other"}
		at(d, "operations.a_send")["messages"] = []any{
			map[string]any{"$ref": "#/channels/things/messages/done"},
			map[string]any{"$ref": "#/channels/things/messages/other"},
		}
	})
	doc, err := ParseDocument(raw)
	if err != nil {
		t.Fatal(err)
	}
	op, _ := doc.Find("a", Send, "thing_done")
	if got := doc.CheckPayload(op, []byte(`{"name": "x"}`)); got != nil {
		t.Errorf("a payload of the second message: %q", got)
	}
	if got := doc.CheckPayload(op, []byte(`{"name": "x", "more": 1}`)); len(got) != 1 || !strings.Contains(got[0], "/more is not declared in the schema of #/channels/things/messages/other") {
		t.Errorf("an undeclared member of the second message: %q", got)
	}
	if got := doc.CheckPayload(op, []byte(`{}`)); len(got) != 2 {
		t.Errorf("a payload of neither message: %q, want a problem with each", got)
	}
}
