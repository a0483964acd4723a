#!/usr/bin/env bash
# What a crash sends twice (issue 16): a send to 6,000 subscribers into Postfix's smtp-sink (which
# dumps every message), killed with SIGKILL once 2,500 messages have arrived, then run again.
# Prints how many messages were received whole twice (the same Message-ID): the rerun's resends.
#
#   bench/kill_resends.sh [GAZETTE_BINARY]     (default: target/release/gazette)
set -euo pipefail
# example.org addresses into a local sink: a rehearsal the placeholder rule lets through when asked.
export GAZETTE_ALLOW_PLACEHOLDERS=1
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
BIN=${1:-$ROOT/target/release/gazette}
N=${KILL_SUBSCRIBERS:-6000}
AT=${KILL_AT:-2500}
W=$(mktemp -d /tmp/gazette-kill.XXXXXX)
SINK_PID=""
cleanup() { [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$W/dump"
"$SHARED/tools/smtp-sink" -d "$W/dump/" 127.0.0.1:"$PORT" 256 >/dev/null 2>&1 &
SINK_PID=$!
python3 -c "print('email,name'); [print(f'reader{i:05d}@example.org,Reader {i}') for i in range($N)]" >"$W/readers.csv"
cat >"$W/publish.toml" <<T
[site]
title = "Signals Weekly"
base_url = "https://signals.example.org"
[paths]
digests = "$ROOT/digests"
out = "$W/out"
database = "$W/gazette.db"
[email]
from = "Signals Weekly <newsletter@signals.example.org>"
[smtp]
url = "smtp://127.0.0.1:$PORT?tls=none"
concurrency = 4
T
export GAZETTE_SECRET=bench-secret-0123456789abcdef0123456789
"$BIN" --config "$W/publish.toml" subscribers import "$W/readers.csv" >/dev/null
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$BIN" --config "$W/publish.toml" send --week 2023-07-23 >/dev/null 2>&1 &
sender=$!
while [ "$(find "$W/dump" -maxdepth 1 -type f | wc -l)" -lt "$AT" ]; do sleep 0.005; done
kill -9 "$sender"
wait "$sender" 2>/dev/null || true
"$BIN" --config "$W/publish.toml" send --week 2023-07-23 >/dev/null 2>&1
sleep 0.5
python3 - "$W/dump" "$N" <<'P'
import collections, os, sys
ids = collections.Counter()
for name in os.listdir(sys.argv[1]):
    raw = open(os.path.join(sys.argv[1], name), 'rb').read().decode('latin1')
    if not raw.rstrip().endswith('--'):  # cut short by the kill
        continue
    ids[next((l.split(':', 1)[1].strip() for l in raw.split('\n') if l.lower().startswith('message-id:')), None)] += 1
assert len(ids) == int(sys.argv[2]), f"{len(ids)} of {sys.argv[2]} subscribers got the issue"
print(sum(ids.values()) - len(ids))
P
