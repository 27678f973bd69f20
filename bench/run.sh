#!/usr/bin/env bash
# Every benchmark of relief, with its references, in one run on this machine:
#   - pgbench (TPC-B-like) against the same PostgreSQL, as the reference for approvals;
#   - relief-bench load: approvals, reads, a case's whole life and the report, on PostgreSQL
#     and SQLite, direct and through the gateway;
#   - relief-bench gateway: one call direct, through the gateway and through nginx's
#     grpc_pass in front of the same backend.
# It installs what it needs from Debian's packages (nginx-light, postgresql-client) and
# prints the ratios to the references at the end.
#
#   bash bench/run.sh                      # defaults: 10 s per run, 16 clients
#   SECONDS_PER_RUN=20 CLIENTS=32 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# A PostgreSQL on this machine is reached over its Unix socket, as a database on the same
# host is; pgbench and relief use the same URL, so the ratio compares like with like.
if [ -z "${RELIEF_BENCH_POSTGRES_URL:-}" ] && [ -S /var/run/postgresql/.s.PGSQL.5432 ]; then
  PG_ADMIN=postgres://postgres@%2Fvar%2Frun%2Fpostgresql/postgres
else
  PG_ADMIN=${RELIEF_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
fi
RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-16}
OUT=${BENCH_OUT:-target/bench}
mkdir -p "$OUT"

need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 for $1" >&2
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
  fi
}
need pgbench postgresql-client
need psql postgresql-client
need nginx nginx-light
NGINX=$(command -v nginx)

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)"
echo "== PostgreSQL: ${PG_ADMIN}"
cargo build --release -q -p reliefd -p relief-bench
B=target/release/relief-bench

echo "== pgbench (TPC-B-like, scale 1: one branch row, as one district), $CLIENTS clients, $RUN s"
DB=relief_pgbench_$$
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
PGB_URL="${PG_ADMIN%/*}/$DB"
pgbench -q -i -s 1 "$PGB_URL" >/dev/null 2>&1
pgbench -n -c "$CLIENTS" -j 2 -T "$RUN" "$PGB_URL" | tee "$OUT/pgbench.txt" | grep -E "^tps|latency average"
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
PGB_TPS=$(awk '/^tps/ {print $3; exit}' "$OUT/pgbench.txt")

for scenario in approvals reads case-life report; do
  echo "== relief-bench load --scenario $scenario (PostgreSQL)"
  $B load --scenario "$scenario" --seconds "$RUN" --concurrency "$CLIENTS" --postgres "$PG_ADMIN" \
    | tee "$OUT/load-$scenario-postgres.txt"
done
echo "== relief-bench load --scenario approvals over ${DISTRICTS:=4} districts, direct (PostgreSQL)"
$B load --scenario approvals --districts "$DISTRICTS" --gateway false --seconds "$RUN" \
  --concurrency "$CLIENTS" --postgres "$PG_ADMIN" | tee "$OUT/load-approvals-districts-postgres.txt"
echo "== relief-bench load --scenario reads, open loop at ${READ_RATE:=500}/s (PostgreSQL)"
$B load --scenario reads --rate "$READ_RATE" --seconds "$RUN" --postgres "$PG_ADMIN" \
  | tee "$OUT/load-reads-open-postgres.txt"
for scenario in approvals reads; do
  echo "== relief-bench load --scenario $scenario (SQLite)"
  $B load --scenario "$scenario" --seconds "$RUN" --concurrency "$CLIENTS" \
    | tee "$OUT/load-$scenario-sqlite.txt"
done

TCP_ADMIN=postgres://postgres@127.0.0.1:5432/postgres
if [ "$PG_ADMIN" != "$TCP_ADMIN" ] && pg_isready -q -d "$TCP_ADMIN" 2>/dev/null; then
  echo "== the same over TCP (127.0.0.1), as a database on another host is reached: pgbench, approvals, reads"
  DB=relief_pgbench_tcp_$$
  psql -q "$TCP_ADMIN" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  pgbench -q -i -s 1 "${TCP_ADMIN%/*}/$DB" >/dev/null 2>&1
  pgbench -n -c "$CLIENTS" -j 2 -T "$RUN" "${TCP_ADMIN%/*}/$DB" | tee "$OUT/pgbench-tcp.txt" | grep -E "^tps"
  psql -q "$TCP_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
  for scenario in approvals reads; do
    $B load --scenario "$scenario" --seconds "$RUN" --concurrency "$CLIENTS" --gateway false \
      --postgres "$TCP_ADMIN" | tee "$OUT/load-$scenario-postgres-tcp.txt"
  done
  $B load --scenario approvals --districts "$DISTRICTS" --gateway false --seconds "$RUN" \
    --concurrency "$CLIENTS" --postgres "$TCP_ADMIN" | tee "$OUT/load-approvals-districts-postgres-tcp.txt"
fi

echo "== relief-bench gateway (direct, relief gateway, nginx grpc_pass; one worker thread each)"
# nginx runs one worker process; the gateway gets one worker thread to match.
$B gateway --seconds "$((RUN / 2 > 0 ? RUN / 2 : 1))" --gateway-threads 1 --nginx "$NGINX" \
  | tee "$OUT/gateway.txt"

echo "== ratios"
APPROVAL_TPS=$(awk '/^  direct/ {gsub("/s","",$2); print $2; exit}' "$OUT/load-approvals-postgres.txt")
READS=$(awk '/^  direct/ {gsub("/s","",$2); print $2; exit}' "$OUT/load-reads-postgres.txt")
READS_P99=$(awk '/^  direct/ {for (i=1;i<=NF;i++) if ($i=="p99") {print $(i+1); exit}}' "$OUT/load-reads-postgres.txt")
APPROVALS_SPREAD=$(awk '/^  direct/ {gsub("/s","",$2); print $2; exit}' "$OUT/load-approvals-districts-postgres.txt")
awk -v a="$APPROVAL_TPS" -v p="$PGB_TPS" 'BEGIN {printf "approval steps, one district: %.0f/s vs pgbench %.0f tps: %.1f%% (target 50%%)\n", a, p, 100*a/p}'
awk -v a="$APPROVALS_SPREAD" -v p="$PGB_TPS" -v d="$DISTRICTS" 'BEGIN {printf "approval steps, %d districts: %.0f/s vs pgbench %.0f tps: %.1f%%\n", d, a, p, 100*a/p}'
echo "reads direct on PostgreSQL: ${READS}/s, p99 ${READS_P99} ms (target 5000/s, p99 under 10 ms)"
if [ -f "$OUT/pgbench-tcp.txt" ]; then
  awk -v a="$(awk '/^  direct/ {gsub("/s","",$2); print $2; exit}' "$OUT/load-approvals-postgres-tcp.txt")" \
    -v p="$(awk '/^tps/ {print $3; exit}' "$OUT/pgbench-tcp.txt")" \
    'BEGIN {printf "over TCP: approval steps, one district: %.0f/s vs pgbench %.0f tps: %.1f%%\n", a, p, 100*a/p}'
  awk -v a="$(awk '/^  direct/ {gsub("/s","",$2); print $2; exit}' "$OUT/load-approvals-districts-postgres-tcp.txt")" \
    -v p="$(awk '/^tps/ {print $3; exit}' "$OUT/pgbench-tcp.txt")" -v d="$DISTRICTS" \
    'BEGIN {printf "over TCP: approval steps, %d districts: %.0f/s vs pgbench %.0f tps: %.1f%%\n", d, a, p, 100*a/p}'
  grep -h "^  direct" "$OUT/load-reads-postgres-tcp.txt" | sed 's/^/over TCP: reads/'
fi
grep -E "throughput .* of direct|added latency" "$OUT/gateway.txt" || true
grep -h "peak memory" "$OUT"/*.txt | sort -k5 -n | tail -3
