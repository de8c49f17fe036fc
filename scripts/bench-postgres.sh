#!/usr/bin/env bash
# POST /allocate on PostgreSQL against pgbench -N on the same server, in one
# run: the figures docs/benchmarks.md records.
#
#   scripts/bench-postgres.sh [seconds]
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and pgbench.
# Creates and drops the databases stockflow_bench and stockflow_pgbench.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
pg="-h 127.0.0.1 -U postgres"
export PGSSLMODE=disable
bin=$(mktemp -d)/stockflow
go build -o "$bin" ./cmd/stockflow

psql $pg -qc 'DROP DATABASE IF EXISTS stockflow_bench' -c 'CREATE DATABASE stockflow_bench'
psql $pg -qc 'DROP DATABASE IF EXISTS stockflow_pgbench' -c 'CREATE DATABASE stockflow_pgbench'
pgbench $pg -i -s 10 -q stockflow_pgbench >/dev/null 2>&1

"$bin" serve allocation --db "postgres://postgres@127.0.0.1:5432/stockflow_bench?sslmode=disable" \
    --http 127.0.0.1:5091 --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf 127.0.0.1:5091/healthz >/dev/null && break; sleep 0.2; done

echo "== stockflow: 16 connections over 100 skus"
"$bin" load --url http://127.0.0.1:5091 --connections 16 --skus 100 --duration "${secs}s" --pid $pid
echo "== pgbench -N -c 16 -j 2"
pgbench $pg -N -c 16 -j 2 -T "$secs" stockflow_pgbench 2>/dev/null | grep -E '^(tps|latency average)'
echo "== stockflow: 16 connections on a single sku"
"$bin" load --url http://127.0.0.1:5091 --connections 16 --skus 1 --duration "${secs}s" --pid $pid
