// Package contract checks that stockflow's services keep the contract
// docs/asyncapi.json describes: the AsyncAPI 3.0.0 document that lists
// every message crossing a service boundary, its channel, its payload's
// JSON Schema, and which service (or system outside stockflow) sends and
// receives it.
//
// The package holds what the check is made of:
//
//   - Document reads the AsyncAPI document, checks that it is well formed
//     as far as stockflow uses AsyncAPI (version, references, operations
//     and their channels and messages), and answers who sends and who
//     receives on each channel;
//   - Validator validates JSON values against the subset of JSON Schema
//     the document uses, and finds the fields a value carries that its
//     schema does not declare.
//
// Its tests do the checking: statically, that each service's inbound
// channels are the channels the document has it receive, and that each
// service reads the examples of the messages it receives; and
// dynamically, by running all five services in one process on one
// in-process broker, driving the shop through HTTP until every message
// kind was sent (a durable timer due years ahead is made due by promoting
// it from its service's scheduled timers, as the relay does on its day),
// and checking every message each service published against the
// document.
package contract
