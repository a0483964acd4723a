#!/usr/bin/env bash
# The incremental build (issue 16): over a corpus of digests, a full build (no build cache), a
# build with nothing changed, and a build after one digest is edited in place (same size), each
# timed; repeated RUNS times, alternating. Prints one line per measurement: name, seconds of wall
# clock and seconds of CPU time.
#
#   bench/incremental.sh BIN DIGESTS WORK [RUNS]
#
# DIGESTS is copied into WORK; the cache and output live there too.
set -euo pipefail
BIN=$1 SRC=$2 WORK=$3 RUNS=${4:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
now() { date +%s.%N; }
mkdir -p "$WORK"
rm -rf "$WORK/digests" && cp -r "$SRC" "$WORK/digests"
cat >"$WORK/publish.toml" <<TOML
[site]
title = "Signals Weekly"
base_url = "https://signals.example.org"
[paths]
digests = "$WORK/digests"
templates = "$ROOT/templates"
out = "$WORK/out"
cache = "$WORK/cache"
database = "$WORK/gazette.db"
TOML
timed() { # NAME: runs the build, prints "NAME seconds cpu-seconds" and keeps its report
    local t0 t1
    t0=$(now)
    # The CPU time (user + system) as well: on a shared machine it moves less than the wall clock.
    /usr/bin/time -f "%U %S" -o "$WORK/$1.time" "$BIN" --config "$WORK/publish.toml" build --all >"$WORK/$1.txt" 2>&1
    t1=$(now)
    echo "$1 $(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }") $(awk '{ printf "%.3f", $1 + $2 }' "$WORK/$1.time")"
}
# The file edited: the first digest file, one letter of its summary (the size stays).
victim=$(python3 -c 'import os, sys; d = sys.argv[1]; print(os.path.join(d, min(f for f in os.listdir(d) if f.endswith(".txt"))))' "$WORK/digests")
sleep 2.5 # the build cache trusts files by their stamps once they are 2 s old
for run in $(seq "$RUNS"); do
    rm -rf "$WORK/cache" "$WORK/out"
    timed full
    sleep 2.5
    timed unchanged
    python3 - "$victim" "$run" <<'PY'
import sys
path, run = sys.argv[1], int(sys.argv[2])
text = open(path, encoding="utf-8", newline="").read()
at = text.index("## Summary") + len("## Summary\n\n")
letter = "ab"[run % 2]
text = text[:at] + letter + text[at + 1:]
open(path, "w", encoding="utf-8", newline="").write(text)
PY
    timed edited
    grep -h "rendered" "$WORK/edited.txt" | sed 's/^[^:]*: /edited report: /'
done
