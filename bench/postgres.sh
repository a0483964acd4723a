#!/usr/bin/env bash
# Issue 15's figures, side by side in one run: the send rate with 1, 2 and 3 `gazette send`
# processes sharing one issue on PostgreSQL, against one smtp-sink, beside one sender on SQLite; and
# the import rate on PostgreSQL (COPY) beside SQLite. Prints a Markdown table for BENCHMARKS.md.
#
#   bench/postgres.sh                         SUBSCRIBERS=20000 IMPORT_ROWS=500000 by default
#   GAZETTE_BIN=/path/gazette bench/postgres.sh
#
# It starts its own throwaway cluster (initdb + pg_ctl on a free loopback port, as the `postgres`
# user when run as root) and removes it at the end.
set -euo pipefail
# example.org addresses into a local sink: a rehearsal the placeholder rule lets through when asked.
export GAZETTE_ALLOW_PLACEHOLDERS=1
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
SUBSCRIBERS=${SUBSCRIBERS:-20000}
IMPORT_ROWS=${IMPORT_ROWS:-500000}
WEEK=2023-07-23
if [ -z "${GAZETTE_BIN:-}" ]; then
    cargo build --release --quiet
    GAZETTE_BIN=$ROOT/target/release/gazette
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGPORT=$(free_port)
mkdir -p "$WORK/pg"
echo bench >"$WORK/pg/pw"
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U gazette --pwfile "$WORK/pg/pw" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -o "-h 127.0.0.1 -p $PGPORT -k $WORK/pg" -w start >/dev/null
SINK_PID=
cleanup() {
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export GAZETTE_DATABASE_PASSWORD=bench GAZETTE_SECRET=bench-secret-0123456789abcdef

python3 - "$WORK/readers.csv" "$SUBSCRIBERS" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write("email,name\n")
    for i in range(int(sys.argv[2])):
        f.write(f"reader{i:07d}@example.org,Reader {i}\n")
EOF
python3 - "$WORK/import.csv" "$IMPORT_ROWS" <<'EOF'
import random, sys
random.seed(15)
with open(sys.argv[1], "w") as f:
    f.write("email,name\n")
    for i in random.sample(range(10 * int(sys.argv[2])), int(sys.argv[2])):
        f.write(f"someone{i:08d}@example.org,Someone {i}\n")
EOF

# project NAME DATABASE PORT: a project folder with the repo's digests
project() {
    mkdir -p "$WORK/$1"
    cat >"$WORK/$1/publish.toml" <<EOF
[site]
title = "Bench"
base_url = "https://bench.example.org"
[paths]
digests = "$ROOT/digests"
out = "out"
database = "$2"
[email]
from = "Bench <news@bench.example.org>"
[smtp]
url = "smtp://127.0.0.1:$3?tls=none"
concurrency = 4
EOF
}
g() { (cd "$WORK/$1" && shift && "$GAZETTE_BIN" --config publish.toml "$@"); }
now() { date +%s.%N; }

SINK_PORT=$(free_port)
"$SHARED/tools/smtp-sink" "127.0.0.1:$SINK_PORT" 512 >/dev/null 2>&1 &
SINK_PID=$!
sleep 1

# send_run LABEL SENDERS DATABASE
send_run() {
    local label=$1 senders=$2 db=$3
    project "$label" "$db" "$SINK_PORT"
    g "$label" subscribers import "$WORK/readers.csv" >/dev/null
    local t0 pids=()
    t0=$(now)
    for _ in $(seq "$senders"); do
        g "$label" send --week $WEEK >/dev/null 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    local t1 sent
    t1=$(now)
    sent=$(g "$label" status --week $WEEK --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sent"])')
    printf '| %s | %s | %s | %.2f s | **%.0f** |\n' "$label" "$senders" "$sent" "$(echo "$t1 - $t0" | bc)" "$(echo "$sent / ($t1 - $t0)" | bc -l)"
}

createdb_() { as_pg "$PGBIN/createdb" -h "$WORK/pg" -p "$PGPORT" -U gazette "$1"; }
echo "| store | senders | messages | time | messages per second |"
echo "|---|---:|---:|---:|---:|"
send_run sqlite 1 "$WORK/sqlite-send.db"
for n in 1 2 3; do
    createdb_ "send$n"
    send_run "postgres-$n" "$n" "postgres://gazette@127.0.0.1:$PGPORT/send$n"
done

echo
echo "| store | rows | time | rows per second |"
echo "|---|---:|---:|---:|"
import_run() {
    local label=$1 db=$2 t0 t1
    project "$label" "$db" "$SINK_PORT"
    t0=$(now)
    g "$label" subscribers import "$WORK/import.csv" >/dev/null
    t1=$(now)
    printf '| %s | %s | %.2f s | **%.0f** |\n' "$label" "$IMPORT_ROWS" "$(echo "$t1 - $t0" | bc)" "$(echo "$IMPORT_ROWS / ($t1 - $t0)" | bc -l)"
}
import_run import-sqlite "$WORK/import.db"
createdb_ importpg
import_run import-postgres "postgres://gazette@127.0.0.1:$PGPORT/importpg"
echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1 /proc/loadavg)."
