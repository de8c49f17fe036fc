// Package domain is the allocation model of Architecture Patterns with
// Python (chapters 1 to 12): order lines, batches and the Product aggregate,
// with the commands it accepts and the events it raises.
//
// It is pure Go: no I/O, no clock, no imports of adapters. A Product loaded
// from a repository carries every batch of its sku with the quantity
// allocated from it, but only the order lines the operation at hand needs
// (see Batch.Lines); this is what keeps an allocation's cost independent of
// how many allocations the sku has had.
package domain
