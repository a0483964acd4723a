#!/usr/bin/env bash
# Unsigned and RSA-2048-signed sends of two Gazette binaries, alternated, into one smtp-sink: did a
# change slow the signed send, or did the machine? Prints msg/s of each send.
#
#   KEEP=1 ONLY=send bench/run.sh            # makes the inputs; prints its work folder
#   bench/ab_signed.sh WORK OLD_BIN OLD_TEMPLATES [NEW_BIN]
#
# WORK is that folder (its send-digests, send/subscribers.csv and send/rsa.pem are used); each
# binary gets a database it imports itself (an older binary refuses a newer schema) and its own
# templates folder (OLD_TEMPLATES: the old commit's `templates/`).
set -euo pipefail
W=$1 OLD=$2 OLD_TEMPLATES=$3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NEW=${4:-$ROOT/target/release/gazette}
RUNS=${RUNS:-3}
D=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ROOT/../shared/tools/smtp-sink" 127.0.0.1:"$PORT" 1024 >/dev/null 2>&1 &
SINK=$!
trap 'kill $SINK; rm -rf "$D"' EXIT
sleep 1
export GAZETTE_ALLOW_PLACEHOLDERS=1
DKIM=$(printf '[dkim]\ndomain = "signals.example.org"\nselector = "gazette"\nprivate_key = "%s"\n' "$W/send/rsa.pem")
bin() { if [ "$1" = old ]; then echo "$OLD"; else echo "$NEW"; fi; }
templates() { if [ "$1" = old ]; then echo "$OLD_TEMPLATES"; else echo "$ROOT/templates"; fi; }
config() { # FILE WHO DATABASE [EXTRA]
    cat >"$1" <<T
[site]
title = "Signals Weekly"
base_url = "https://signals.example.org"
[paths]
digests = "$W/send-digests"
templates = "$(templates "$2")"
out = "$D/out-$2"
database = "$3"
[email]
from = "Signals Weekly <newsletter@signals.example.org>"
[smtp]
url = "smtp://127.0.0.1:$PORT?tls=none"
concurrency = 4
${4:-}
T
}
for who in old new; do
    config "$D/import-$who.toml" "$who" "$D/base-$who.db"
    "$(bin "$who")" --config "$D/import-$who.toml" subscribers import "$W/send/subscribers.csv" >/dev/null
    sqlite3 "$D/base-$who.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
done
n=$(($(wc -l <"$W/send/subscribers.csv") - 1))
once() { # WHO [DKIM]: one send from a fresh copy of WHO's database; prints msg/s
    rm -f "$D"/run.db*
    cp "$D/base-$1.db" "$D/run.db"
    config "$D/run.toml" "$1" "$D/run.db" "${2:-}"
    local t0 t1
    t0=$(date +%s.%N)
    "$(bin "$1")" --config "$D/run.toml" send --week 2023-07-23 >"$D/out.txt" 2>&1 || { cat "$D/out.txt" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk "BEGIN { printf \"%.0f\", $n / ($t1 - $t0) }"
}
for run in $(seq "$RUNS"); do
    for who in old new; do
        echo "run $run $who: unsigned $(once "$who") msg/s, RSA-2048 signed $(once "$who" "$DKIM") msg/s"
    done
done
