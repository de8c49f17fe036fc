#!/usr/bin/env bash
# What the journal costs: POST /allocate on PostgreSQL with the allocation
# service alone, and with the flows service in the same process journaling
# every message it publishes (receipts on in both: POST /allocate is an
# HTTP command, whose handling records none; the read model's handlers are
# idempotent and record none either). Interleaved rounds, since this
# machine is shared: the figures docs/benchmarks.md records.
#
#   scripts/bench-journal.sh [seconds] [rounds]
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth). Creates
# and drops the database stockflow_journal_bench.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
pg="-h 127.0.0.1 -U postgres"
export PGSSLMODE=disable
bin=$(mktemp -d)/stockflow
go build -o "$bin" ./cmd/stockflow
db="postgres://postgres@127.0.0.1:5432/stockflow_journal_bench?sslmode=disable"

run() { # services
	psql $pg -qc 'DROP DATABASE IF EXISTS stockflow_journal_bench' -c 'CREATE DATABASE stockflow_journal_bench'
	"$bin" serve "$1" --db "$db" --http 127.0.0.1:5092 --log-level warn &
	pid=$!
	for _ in $(seq 1 50); do curl -sf 127.0.0.1:5092/healthz >/dev/null && break; sleep 0.2; done
	echo "== $1: 16 connections over 100 skus"
	"$bin" load --url http://127.0.0.1:5092 --connections 16 --skus 100 --duration "${secs}s" --pid $pid | grep -E 'requests:|status|latency'
	kill $pid
	wait $pid 2>/dev/null || true
	pid=
}
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; true' EXIT
for r in $(seq 1 "$rounds"); do
	if ((r % 2)); then
		run allocation
		run allocation,flows
	else
		run allocation,flows
		run allocation
	fi
done
psql $pg -qc 'DROP DATABASE IF EXISTS stockflow_journal_bench'
