#!/usr/bin/env bash
# Gazette's benchmarks (issue 8): every speed and memory goal of the project, measured side by side
# with the limit or the tool a user would otherwise pick, on this machine.
#
#   bench/run.sh                      everything (about 20 minutes on 2 cores, first build and a clean build included)
#   ONLY="send render" bench/run.sh   a subset of: send crash memory render build import serve clean (printed only,
#                                     BENCHMARKS.md is left alone)
#   RUNS=5 bench/run.sh               runs per side (median; default 3)
#   KEEP=1 bench/run.sh               keep the work folder (inputs, databases, logs) and print it
#   GAZETTE_BIN=/path/gazette RENDER_BENCH_BIN=/path/render_bench bench/run.sh
#                                     measure those binaries (another commit's) instead of building
#   BASELINE_BIN=/path/gazette bench/run.sh
#                                     also runs that binary (another commit's) in the send and the
#                                     incremental build, alternating with this one, and prints the ratio
#
# It builds the release binary and the render_bench example, installs what it needs (wrk, nginx,
# GNU time, sqlite3 and node from Debian; the `mjml` npm package into a temporary folder), generates
# its own inputs (digests with ../shared/corpus/gen_digests.py, subscribers as CSV), runs each
# measurement with both sides in this one invocation, alternating, and writes the table to stdout
# and into the "Results" section of BENCHMARKS.md (the rest of that file is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
ALL="send crash memory render build import serve clean"
ONLY=${ONLY:-$ALL}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-4}
SEND_SUBSCRIBERS=${SEND_SUBSCRIBERS:-20000}
MEMORY_SUBSCRIBERS=${MEMORY_SUBSCRIBERS:-1000000}
IMPORT_ROWS=${IMPORT_ROWS:-1000000}
BUILD_SIZES=${BUILD_SIZES:-1000 10000 100000}
MESSAGE_BYTES=${MESSAGE_BYTES:-30000}
WEEK=2023-07-23 # the sending issue's week: 17-23 July 2023
STARTED=$(date +%s)
# The benchmark's projects use example.org addresses and a local sink: a rehearsal, which the
# placeholder rule lets through only when asked (README, GAZETTE_ALLOW_PLACEHOLDERS).
export GAZETTE_ALLOW_PLACEHOLDERS=1

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
wanted() { [[ " $ONLY " == *" $1 "* ]]; }
now() { date +%s.%N; }
# calc EXPR -> the value with DIGITS decimals (default 2)
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
# median of the arguments (the mean of the two middle ones for an even count)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# 1234567 -> 1,234,567
thousands() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # PORT PID: until something listens on PORT, or PID has exited (status 1)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# What it needs
need=()
for pair in wrk:wrk nginx:nginx sqlite3:sqlite3 node:nodejs npm:npm curl:curl; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -x /usr/bin/time ] || need+=(time)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -n "${GAZETTE_BIN:-}" ]; then
    # Binaries built elsewhere (another commit's, to compare): GAZETTE_BIN and RENDER_BENCH_BIN.
    BIN=$GAZETTE_BIN
    RENDER_BENCH=${RENDER_BENCH_BIN:-$(dirname "$BIN")/examples/render_bench}
    log "using $BIN and $RENDER_BENCH"
else
    log "building the release binary"
    cargo build --release --locked --quiet --bin gazette --example render_bench
    BIN=$ROOT/target/release/gazette
    RENDER_BENCH=$ROOT/target/release/examples/render_bench
fi
SINK=$SHARED/tools/smtp-sink
SOURCE=$SHARED/tools/smtp-source
GEN=$SHARED/corpus/gen_digests.py

WORK=${BENCH_WORK:-$(mktemp -d /tmp/gazette-bench.XXXXXX)}
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then log "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
RESULTS=$WORK/results.tsv # measurement, gazette, reference, ratio, goal, met
: >"$RESULTS"
NOTES=$WORK/notes.txt # one line per detail under the table
: >"$NOTES"
result() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; printf '%-44s %-26s %-30s %-8s %-14s %s\n' "$@" >&2; }
note() { echo "$*" >>"$NOTES"; log "$*"; }
met() { awk "BEGIN { exit !($1) }" && echo met || echo "**not met**"; }

# write_config FILE DIGESTS OUT DATABASE SMTP_URL [EXTRA]: EXTRA (a [dkim] section) is appended
write_config() {
    cat >"$1" <<EOF
[site]
title = "Signals Weekly"
base_url = "https://signals.example.org"
[paths]
digests = "$2"
templates = "$ROOT/templates"
out = "$3"
database = "$4"
[email]
from = "Signals Weekly <newsletter@signals.example.org>"
[smtp]
url = "$5"
concurrency = $CONCURRENCY
${6:-}
EOF
}

# gen_csv ROWS FILE: email,name with mixed-case addresses, every row distinct (as bench/import.sh)
gen_csv() {
    python3 - "$1" >"$2" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
out.write("email,name\n")
for start in range(0, n, 10000):
    out.write("".join(f"Reader.{i:07d}@Example{i % 97}.org,Reader {i}\n" for i in range(start, min(n, start + 10000))))
PY
}

# import_db CSV DB: a database holding the CSV's subscribers, checkpointed into one file
import_db() {
    local dir
    dir=$(dirname "$2")
    write_config "$dir/import.toml" "$WORK/none" "$dir/out" "$2" "file://$dir/outbox"
    "$BIN" --config "$dir/import.toml" subscribers import "$1" >/dev/null
    sqlite3 "$2" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
}

# sent_count CONFIG: deliveries recorded as sent for the week
sent_count() { "$BIN" --config "$1" status --week "$WEEK" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["sent"])'; }

# ---------------------------------------------------------------------------------------------
# Inputs
needs_send_issue=0
for m in send memory render; do wanted "$m" && needs_send_issue=1; done
if ((needs_send_issue)); then
    # The sending issue: digests of one week, as many as make a message closest to MESSAGE_BYTES.
    log "choosing a week of digests whose email is about $MESSAGE_BYTES bytes"
    probe=$WORK/probe
    mkdir -p "$probe"
    best="" best_off=999999999 best_size=0
    for k in $(seq 1 40); do
        smallest=999999999
        for seed in 1 2 3 4 5 6 7 8; do
            rm -rf "$probe/digests" "$probe/outbox" "$probe/gazette.db"*
            python3 "$GEN" "$probe/digests" --count "$k" --start 2023-07-17 --days 1 --seed "$seed" >/dev/null
            write_config "$probe/publish.toml" "$probe/digests" "$probe/out" "$probe/gazette.db" "file://$probe/outbox"
            "$BIN" --config "$probe/publish.toml" send --test bench@example.org --week "$WEEK" >/dev/null
            size=$(stat -c %s "$probe"/outbox/*)
            off=$((size > MESSAGE_BYTES ? size - MESSAGE_BYTES : MESSAGE_BYTES - size))
            if ((off < best_off)); then best="$k $seed" best_off=$off best_size=$size; fi
            if ((size < smallest)); then smallest=$size; fi
        done
        if ((smallest > MESSAGE_BYTES)); then break; fi
    done
    read -r count seed <<<"$best"
    SEND_DIGESTS=$WORK/send-digests
    python3 "$GEN" "$SEND_DIGESTS" --count "$count" --start 2023-07-17 --days 1 --seed "$seed" >/dev/null
    note "Sending issue: $count digests of the week of $WEEK; one subscriber's message is $(thousands "$best_size") bytes on the wire."
fi

# ---------------------------------------------------------------------------------------------
# 5. Import (first: the memory run sends to the database it makes)
if wanted import; then
    log "import: generating $(thousands "$IMPORT_ROWS") rows"
    mkdir -p "$WORK/import"
    gen_csv "$IMPORT_ROWS" "$WORK/import/subscribers.csv"
fi
if wanted import; then
    times=() peaks=()
    for run in $(seq "$RUNS"); do
        dir=$WORK/import/run-$run
        mkdir -p "$dir"
        write_config "$dir/publish.toml" "$WORK/none" "$dir/out" "$dir/gazette.db" "file://$dir/outbox"
        t0=$(now)
        /usr/bin/time -v -o "$dir/time.txt" "$BIN" --config "$dir/publish.toml" subscribers import "$WORK/import/subscribers.csv" >"$dir/out.txt"
        t1=$(now)
        expected="added $IMPORT_ROWS, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 0"
        [ "$(cat "$dir/out.txt")" = "$expected" ] || { echo "unexpected import report: $(cat "$dir/out.txt")" >&2; exit 1; }
        times+=("$(calc "$t1 - $t0" 3)")
        peaks+=("$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir/time.txt")")
        log "import run $run: ${times[-1]} s"
        if [ "$run" = "$RUNS" ]; then # kept for the memory run
            sqlite3 "$dir/gazette.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
            mv "$dir/gazette.db" "$WORK/import/last.db"
        fi
        rm -rf "$dir/gazette.db"*
    done
    t=$(median "${times[@]}")
    rate=$(calc "$IMPORT_ROWS / $t" 0)
    result "Import $(thousands "$IMPORT_ROWS") rows (rows/s)" "$(thousands "$rate")" "-" "-" ">= 200,000" "$(met "$rate >= 200000")"
    note "Import: median of $RUNS runs ${t} s (runs: ${times[*]} s), peak RSS $(($(median "${peaks[@]}") / 1024)) MiB."
fi

# ---------------------------------------------------------------------------------------------
# The sink both senders deliver into: counts nothing, dumps nothing.
if wanted send || wanted memory; then
    SINK_PORT=$(free_port)
    "$SINK" 127.0.0.1:"$SINK_PORT" 1024 >"$WORK/sink.log" 2>&1 &
    PIDS+=($!)
    wait_port "$SINK_PORT" "$!" || { cat "$WORK/sink.log" >&2; exit 1; }
    SMTP_URL="smtp://127.0.0.1:$SINK_PORT?tls=none"
fi

# 1. Sending
if wanted send; then
    dir=$WORK/send
    mkdir -p "$dir"
    gen_csv "$SEND_SUBSCRIBERS" "$dir/subscribers.csv"
    import_db "$dir/subscribers.csv" "$dir/base.db"
    # The keys of the signed sends: RSA-2048 (PKCS#1 PEM) and Ed25519 (base64 of its 32 bytes).
    openssl genrsa -traditional -out "$dir/rsa.pem" 2048 2>/dev/null
    openssl genpkey -algorithm ed25519 -outform DER -out "$dir/ed25519.der"
    tail -c 32 "$dir/ed25519.der" | base64 -w0 >"$dir/ed25519.key"
    dkim_section() { # PRIVATE_KEY [ED25519_KEY]
        printf '[dkim]\ndomain = "signals.example.org"\nselector = "gazette"\nprivate_key = "%s"\n' "$1"
        [ -z "${2:-}" ] || printf 'ed25519_key = "%s"\ned25519_selector = "gazette-ed"\n' "$2"
    }
    # NAME:SECTION of each signed send.
    SIGNED_SENDS=("RSA-2048:$(dkim_section "$dir/rsa.pem")"
        "Ed25519:$(dkim_section "$dir/ed25519.key")"
        "RSA-2048 and Ed25519:$(dkim_section "$dir/rsa.pem" "$dir/ed25519.key")")
    # The same readers, each following some themes (issue 31): 200 distinct choices of one to
    # three of the themes the sending issue carries, a reader on each in turn, so that every
    # reader's edition holds at least one digest and every reader gets a message. Those editions
    # are smaller than the whole issue; so, for the cost of the editions alone, a second set of
    # 200 choices that each take every digest (every carried theme and one the issue lacks).
    python3 - "$SEND_DIGESTS" "$dir/subscribers.csv" "$dir/themed-whole.csv" >"$dir/themed.csv" <<'PY'
import itertools, os, sys
folder, plain, whole = sys.argv[1], sys.argv[2], sys.argv[3]
carried = set()
for name in os.listdir(folder):
    text = open(os.path.join(folder, name), encoding="utf-8-sig").read()
    section = text.split("## Themes", 1)[1].split("\n## ", 1)[0]
    carried |= {line[2:].strip() for line in section.splitlines() if line.startswith("* ")}
themes = sorted(carried | {"deep sea mining", "quantum gardening", "coastal cities"})
choices = [c for n in (1, 2, 3) for c in itertools.combinations(themes, n) if carried & set(c)][:200]
assert len(choices) == 200, f"only {len(choices)} choices from {sorted(carried)}"
rows = open(plain, encoding="utf-8").read().splitlines()
print(rows[0] + ",themes")
for i, row in enumerate(rows[1:]):
    print(f"{row},{'; '.join(choices[i % 200])}")
with open(whole, "w", encoding="utf-8") as out:
    out.write(rows[0] + ",themes\n")
    for i, row in enumerate(rows[1:]):
        out.write(f"{row},{'; '.join(sorted(carried))}; unwritten theme {i % 200:03d}\n")
PY
    import_db "$dir/themed.csv" "$dir/themed.db"
    import_db "$dir/themed-whole.csv" "$dir/themed-whole.db"
    # send_once BINARY LOG [DKIM [DATABASE]]: a send of the week to every subscriber from a fresh
    # copy of the database (base.db unless given), signed with DKIM (a [dkim] section) when given;
    # prints the rate (messages a second, wall clock of the whole command).
    send_once() {
        local t0 t1 sent
        rm -f "$dir"/run.db*
        cp "${4:-$dir/base.db}" "$dir/run.db"
        write_config "$dir/publish.toml" "$SEND_DIGESTS" "$dir/out" "$dir/run.db" "$SMTP_URL" "${3:-}"
        t0=$(now)
        "$1" --config "$dir/publish.toml" send --week "$WEEK" >"$2" 2>&1
        t1=$(now)
        sent=$(sent_count "$dir/publish.toml")
        [ "$sent" = "$SEND_SUBSCRIBERS" ] || { echo "$1 send recorded $sent sent, expected $SEND_SUBSCRIBERS" >&2; exit 1; }
        calc "$SEND_SUBSCRIBERS / ($t1 - $t0)" 0
    }
    g_rates=() s_rates=() b_rates=()
    signed_rates=() # per signed send, its runs' rates separated by spaces
    t_rates=()      # the send to readers who chose themes
    w_rates=()      # the send to 200 choices whose editions are the whole issue
    for run in $(seq "$RUNS"); do
        # With a baseline, the two take turns going first: what one run leaves (the site, the
        # build cache, the page cache) favours neither.
        if [ -n "${BASELINE_BIN:-}" ] && ((run % 2 == 0)); then
            b_rates+=("$(send_once "$BASELINE_BIN" "$dir/baseline-send-$run.txt")")
        fi
        g_rates+=("$(send_once "$BIN" "$dir/send-$run.txt")")
        if [ -n "${BASELINE_BIN:-}" ] && ((run % 2 == 1)); then
            b_rates+=("$(send_once "$BASELINE_BIN" "$dir/baseline-send-$run.txt")")
        fi
        t_rates+=("$(send_once "$BIN" "$dir/send-themed-$run.txt" "" "$dir/themed.db")")
        w_rates+=("$(send_once "$BIN" "$dir/send-themed-whole-$run.txt" "" "$dir/themed-whole.db")")
        # The signed sends, in the same run as the unsigned one they are compared with.
        for i in "${!SIGNED_SENDS[@]}"; do
            signed_rates[i]+="$(send_once "$BIN" "$dir/send-signed-$i-$run.txt" "${SIGNED_SENDS[$i]#*:}") "
        done
        t0=$(now)
        "$SOURCE" -d -s "$CONCURRENCY" -l "$MESSAGE_BYTES" -m "$SEND_SUBSCRIBERS" -f bench@example.org -t reader@example.org 127.0.0.1:"$SINK_PORT"
        t1=$(now)
        s_rates+=("$(calc "$SEND_SUBSCRIBERS / ($t1 - $t0)" 0)")
        log "send run $run: gazette ${g_rates[-1]}/s, by themes ${t_rates[-1]}/s (editions of the whole issue ${w_rates[-1]}/s), signed (RSA, Ed25519, both) ${signed_rates[*]}/s, smtp-source ${s_rates[-1]}/s${BASELINE_BIN:+, baseline ${b_rates[-1]}/s}"
    done
    g=$(median "${g_rates[@]}") s=$(median "${s_rates[@]}")
    ratio=$(calc "$g / $s")
    result "Send $(thousands "$SEND_SUBSCRIBERS") messages (msg/s)" "$(thousands "$g")" "smtp-source: $(thousands "$s")" "$ratio" ">= 1.0" "$(met "$ratio >= 1.0")"
    # Readers over 200 choices of themes against everyone following everything (issue 31: >= 0.8).
    t=$(median "${t_rates[@]}")
    ratio=$(calc "$t / $g")
    result "Send, 200 choices of themes (msg/s)" "$(thousands "$t")" "everything: $(thousands "$g")" "$ratio" ">= 0.8" "$(met "$ratio >= 0.8")"
    note "Send by themes: $(thousands "$SEND_SUBSCRIBERS") readers over 200 choices of 1 to 3 themes (an edition each); runs ${t_rates[*]}/s."
    w=$(median "${w_rates[@]}")
    ratio=$(calc "$w / $g")
    result "Send, 200 choices, each the whole issue (msg/s)" "$(thousands "$w")" "everything: $(thousands "$g")" "$ratio" ">= 0.8" "$(met "$ratio >= 0.8")"
    note "Send by themes, every edition the whole issue (the editions' own cost, same bytes): runs ${w_rates[*]}/s."
    # The signed sends against the unsigned one (issue 30: RSA-2048 at >= 0.6 of it).
    for i in "${!SIGNED_SENDS[@]}"; do
        name=${SIGNED_SENDS[$i]%%:*}
        read -ra runs <<<"${signed_rates[$i]}"
        r=$(median "${runs[@]}")
        ratio=$(calc "$r / $g")
        if [ "$name" = RSA-2048 ]; then goal=">= 0.6" verdict=$(met "$ratio >= 0.6"); else goal="-" verdict="-"; fi
        result "Send, DKIM $name (msg/s)" "$(thousands "$r")" "unsigned: $(thousands "$g")" "$ratio" "$goal" "$verdict"
        note "Send, DKIM $name: runs ${runs[*]}/s."
    done
    # The ceiling of an RSA-2048-signed send: the processor's own signing rate, one core and all of them.
    rsa_speed() { openssl speed -seconds 3 "$@" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ { print $(NF - 1) }'; }
    one=$(rsa_speed) all=$(rsa_speed -multi "$(nproc)")
    result "openssl speed rsa2048 (signatures/s)" "$(thousands "$one")" "$(nproc) cores: $(thousands "$all")" "-" "the ceiling" "-"
    note "openssl speed -seconds 3 rsa2048: $one signatures/s on one core, $all with -multi $(nproc)."
    if [ -n "${BASELINE_BIN:-}" ]; then
        b=$(median "${b_rates[@]}")
        ratio=$(calc "$g / $b")
        result "Send, this build vs BASELINE_BIN (msg/s)" "$(thousands "$g")" "baseline: $(thousands "$b")" "$ratio" ">= 0.95" "$(met "$ratio >= 0.95")"
        note "Send, baseline $BASELINE_BIN: runs ${b_rates[*]}/s."
    fi
    note "Send: $CONCURRENCY connections, wall clock of the whole command (start, render, fixing the audience, sending, recording); gazette runs ${g_rates[*]}/s, smtp-source -d -s $CONCURRENCY -l $MESSAGE_BYTES runs ${s_rates[*]}/s."
fi

# 1b. What a crash resends: bench/kill_resends.sh, RUNS times.
if wanted crash; then
    resends=()
    for run in $(seq "$RUNS"); do
        resends+=("$("$ROOT/bench/kill_resends.sh" "$BIN")")
        log "crash run $run: ${resends[-1]} resent"
    done
    worst=$(printf '%s\n' "${resends[@]}" | sort -n | tail -1)
    result "Resends after kill -9 of a 6,000-recipient send (worst of $RUNS)" "$worst" "-" "-" "<= 4 (connections)" "$(met "$worst <= 4")"
    note "Crash: bench/kill_resends.sh (SIGKILL once 2,500 of 6,000 messages arrived, rerun), 4 connections; resends per run: ${resends[*]}."
fi

# 2. Memory
if wanted memory; then
    dir=$WORK/memory
    mkdir -p "$dir"
    if [ -f "$WORK/import/last.db" ] && [ "$MEMORY_SUBSCRIBERS" = "$IMPORT_ROWS" ]; then
        mv "$WORK/import/last.db" "$dir/run.db"
    else
        gen_csv "$MEMORY_SUBSCRIBERS" "$dir/subscribers.csv"
        import_db "$dir/subscribers.csv" "$dir/run.db"
    fi
    write_config "$dir/publish.toml" "$SEND_DIGESTS" "$dir/out" "$dir/run.db" "$SMTP_URL"
    log "memory: sending to $(thousands "$MEMORY_SUBSCRIBERS") subscribers (a few minutes)"
    t0=$(now)
    /usr/bin/time -v -o "$dir/time.txt" "$BIN" --config "$dir/publish.toml" send --week "$WEEK" >"$dir/send.txt"
    t1=$(now)
    sent=$(sent_count "$dir/publish.toml")
    [ "$sent" = "$MEMORY_SUBSCRIBERS" ] || { echo "gazette send recorded $sent sent, expected $MEMORY_SUBSCRIBERS" >&2; exit 1; }
    peak=$(( $(awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir/time.txt") / 1024 ))
    result "Send to $(thousands "$MEMORY_SUBSCRIBERS"): peak RSS (MiB)" "$peak" "-" "-" "< 64" "$(met "$peak < 64")"
    note "Memory: one run, $(calc "$t1 - $t0" 1) s ($(thousands "$(calc "$MEMORY_SUBSCRIBERS / ($t1 - $t0)" 0)") messages/s), all $(thousands "$sent") recorded as sent."
fi

# ---------------------------------------------------------------------------------------------
# 3. Rendering
if wanted render; then
    dir=$WORK/render
    mkdir -p "$dir"
    npm_dir=$WORK/npm
    mkdir -p "$npm_dir"
    log "render: npm install mjml"
    (cd "$npm_dir" && npm install --no-save --no-audit --no-fund --loglevel=error mjml >/dev/null)
    mjml_version=$(node -p "require('$npm_dir/node_modules/mjml/package.json').version")
    write_config "$dir/publish.toml" "$SEND_DIGESTS" "$dir/out" "$dir/gazette.db" "file://$dir/outbox"
    mrml_ms=() mjml_ms=() fill_us=() bodies_us=()
    for run in $(seq "$RUNS"); do
        "$RENDER_BENCH" "$dir/publish.toml" "$WEEK" "$dir/email.mjml" 500 >"$dir/mrml.txt"
        NODE_PATH=$npm_dir/node_modules node "$ROOT/bench/mjml_bench.js" "$dir/email.mjml" 150 >"$dir/mjml.txt"
        mrml_ms+=("$(awk '/^compile_ms/ { print $2 }' "$dir/mrml.txt")")
        fill_us+=("$(awk '/^fill_us/ { print $2 }' "$dir/mrml.txt")")
        bodies_us+=("$(awk '/^bodies_us/ { print $2 }' "$dir/mrml.txt")")
        mjml_ms+=("$(awk '/^compile_ms/ { print $2 }' "$dir/mjml.txt")")
        log "render run $run: mrml ${mrml_ms[-1]} ms, mjml ${mjml_ms[-1]} ms, fill ${fill_us[-1]} us"
    done
    r=$(median "${mrml_ms[@]}") j=$(median "${mjml_ms[@]}") f=$(median "${fill_us[@]}")
    ratio=$(calc "$j / $r" 1)
    result "MJML compile, one issue (ms)" "mrml: $(calc "$r" 3)" "mjml $mjml_version (node): $(calc "$j" 2)" "$ratio" ">= 25" "$(met "$ratio >= 25")"
    ratio=$(calc "$r * 1000 / $f" 0)
    result "One subscriber's whole message vs one compile (us)" "$(calc "$f" 1)" "mrml compile: $(calc "$r * 1000" 0)" "$ratio" ">= 100" "$(met "$ratio >= 100")"
    b=$(median "${bodies_us[@]}")
    ratio=$(calc "$r * 1000 / $b" 0)
    result "... of which filling the bodies (us)" "$(calc "$b" 1)" "mrml compile: $(calc "$r * 1000" 0)" "$ratio" ">= 100" "$(met "$ratio >= 100")"
    note "Rendering: the MJML of the sending issue ($(thousands "$(stat -c %s "$dir/email.mjml")") bytes, $(thousands "$(awk '/^html_bytes/ { print $2 }' "$dir/mrml.txt")") bytes of HTML from mrml, $(thousands "$(awk '/^html_bytes/ { print $2 }' "$dir/mjml.txt")") from mjml); each side in one process after a warm-up (examples/render_bench.rs: 500 compiles and 50,000 messages; bench/mjml_bench.js: 150 compiles); the whole message is parsing the address, PreparedEmail::build and formatting the message bytes; filling the bodies is the placeholders put into the pre-encoded text and HTML (PreparedEmail::fill_bodies). Runs: mrml ${mrml_ms[*]} ms, mjml ${mjml_ms[*]} ms, message ${fill_us[*]} us, bodies ${bodies_us[*]} us."
fi

# ---------------------------------------------------------------------------------------------
# 4. Building. Larger corpora are copies of a 2,000-digest one, each copy 12 weeks later with new
# ids (gen_digests.py compares every title with every earlier one: too slow for 100,000).
make_corpus() { # COUNT DIR
    python3 - "$WORK/corpus-2000" "$1" "$2" <<'PY'
import datetime as dt, os, re, sys
src, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = sorted(f for f in os.listdir(src) if f.endswith(".txt"))
os.makedirs(out, exist_ok=True)
heading = re.compile(r"\(\[(\d{8})\]\(")
for n in range(count):
    copy, index = divmod(n, len(files))
    name = files[index]
    text = open(os.path.join(src, name), encoding="utf-8", newline="").read()
    if copy:
        shift = lambda m: "([" + (dt.datetime.strptime(m.group(1), "%Y%m%d") + dt.timedelta(weeks=12 * copy)).strftime("%Y%m%d") + "]("
        text = heading.sub(shift, text, count=1)
    hexid = name.rsplit("_", 1)[1][:-4]
    new_id = f"{copy:04x}{hexid[4:]}"
    with open(os.path.join(out, f"{n:06d}_{new_id}.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(text)
PY
}
if wanted build || wanted serve; then
    log "generating digests"
    python3 "$GEN" "$WORK/corpus-2000" --count 2000 --start 2023-06-05 --days 84 >/dev/null
fi
if wanted build; then
    declare -A build_times
    for n in $BUILD_SIZES; do
        make_corpus "$n" "$WORK/build-$n/digests"
        write_config "$WORK/build-$n/publish.toml" "$WORK/build-$n/digests" "$WORK/build-$n/out" "$WORK/build-$n/gazette.db" "file://$WORK/build-$n/outbox"
        build_times[$n]=""
    done
    for run in $(seq "$RUNS"); do
        for n in $BUILD_SIZES; do
            rm -rf "$WORK/build-$n/out" "$WORK/build-$n/.gazette-cache" # a build from scratch
            t0=$(now)
            "$BIN" --config "$WORK/build-$n/publish.toml" build --all >"$WORK/build-$n/build.txt" 2>&1
            t1=$(now)
            build_times[$n]+=" $(calc "$t1 - $t0" 3)"
            log "build run $run, $n digests: $(calc "$t1 - $t0" 3) s"
        done
    done
    prev_n="" prev_t=""
    for n in $BUILD_SIZES; do
        # shellcheck disable=SC2086
        t=$(median ${build_times[$n]})
        mb=$(du -sm --apparent-size "$WORK/build-$n/digests" | cut -f1)
        growth="-" goal="-" verdict="-"
        if [ -n "$prev_n" ]; then
            # Linear or better: the time grows by at most the factor the digests grow (25% allowed for noise).
            growth=$(calc "$t / $prev_t")
            goal="<= $(calc "1.25 * $n / $prev_n" 1)x"
            verdict=$(met "$growth <= 1.25 * $n / $prev_n")
        fi
        if [ "$n" = 100000 ]; then goal="$goal, < 10 s" && verdict=$(met "$t < 10 && $growth <= 1.25 * $n / $prev_n"); fi
        result "Build --all, $(thousands "$n") digests, $mb MB (s)" "$(calc "$t" 2)" "-" "$growth" "$goal" "$verdict"
        note "Build, $(thousands "$n") digests: runs${build_times[$n]} s; out: $(tail -1 "$WORK/build-$n/build.txt" | sed 's/^[^:]*: //')"
        prev_n=$n prev_t=$t
    done
    # The incremental build (issue 16): the largest corpus, one digest edited in place.
    n=${BUILD_SIZES##* }
    if [ -n "${BASELINE_BIN:-}" ]; then
        # Both binaries, one run each in turn, so that the machine's load falls on both alike.
        : >"$WORK/incremental.txt"
        : >"$WORK/incremental-baseline.txt"
        for run in $(seq "$RUNS"); do
            "$ROOT/bench/incremental.sh" "$BIN" "$WORK/build-$n/digests" "$WORK/incremental" 1 >>"$WORK/incremental.txt"
            "$ROOT/bench/incremental.sh" "$BASELINE_BIN" "$WORK/build-$n/digests" "$WORK/incremental-baseline" 1 >>"$WORK/incremental-baseline.txt"
        done
        for what in unchanged edited; do
            # shellcheck disable=SC2207
            mine=($(awk -v w="$what" '$1 == w && $2 ~ /^[0-9.]+$/ { print $2 }' "$WORK/incremental.txt"))
            # shellcheck disable=SC2207
            theirs=($(awk -v w="$what" '$1 == w && $2 ~ /^[0-9.]+$/ { print $2 }' "$WORK/incremental-baseline.txt"))
            t=$(median "${mine[@]}") b=$(median "${theirs[@]}")
            ratio=$(calc "$b / $t")
            result "Build, cache, $what, vs BASELINE_BIN (s)" "$(calc "$t" 2)" "baseline: $(calc "$b" 2)" "$ratio" ">= 0.95" "$(met "$ratio >= 0.95")"
            note "Incremental build, $what, baseline $BASELINE_BIN: runs ${theirs[*]} s"
        done
    else
        "$ROOT/bench/incremental.sh" "$BIN" "$WORK/build-$n/digests" "$WORK/incremental" "$RUNS" >"$WORK/incremental.txt"
    fi
    for what in full unchanged edited; do
        # shellcheck disable=SC2207
        runs=($(awk -v w="$what" '$1 == w && $2 ~ /^[0-9.]+$/ { print $2 }' "$WORK/incremental.txt"))
        t=$(median "${runs[@]}")
        case $what in
            full) result "Build, no cache, $(thousands "$n") digests (s)" "$(calc "$t" 2)" "-" "-" "-" "-" ;;
            unchanged) result "Build, cache, nothing changed (s)" "$(calc "$t" 2)" "-" "-" "-" "-" ;;
            edited) result "Build, cache, one digest edited (s)" "$(calc "$t" 2)" "-" "-" "< 0.5" "$(met "$t < 0.5")" ;;
        esac
        note "Incremental build, $what: runs ${runs[*]} s"
    done
    note "Incremental build, $(grep -m1 'edited report' "$WORK/incremental.txt" | sed 's/^edited report: //')"
fi

# ---------------------------------------------------------------------------------------------
# 6. Serving: /rss.xml from `gazette serve` and from nginx, the same file, with and without If-None-Match.
if wanted serve; then
    dir=$WORK/serve
    mkdir -p "$dir"
    make_corpus 1000 "$dir/digests"
    write_config "$dir/publish.toml" "$dir/digests" "$dir/out" "$dir/gazette.db" "file://$dir/outbox"
    "$BIN" --config "$dir/publish.toml" build --all >/dev/null
    g_port=$(free_port)
    "$BIN" --config "$dir/publish.toml" serve --listen 127.0.0.1:"$g_port" >"$dir/serve.log" 2>&1 &
    serve_pid=$!
    PIDS+=("$serve_pid")
    if ! wait_port "$g_port" "$serve_pid"; then
        echo "skipped: gazette serve not available ($(tail -1 "$dir/serve.log"))" >&2
        result "Serve /rss.xml" "skipped: gazette serve not available" "-" "-" ">= 0.5" "-"
    else
        n_port=$(free_port)
        mkdir -p "$dir/nginx"
        cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    types { application/rss+xml xml; }
    server { listen 127.0.0.1:$n_port; root $dir/out; }
}
EOF
        nginx -c "$dir/nginx.conf" -p "$dir/nginx" &
        PIDS+=($!)
        wait_port "$n_port" "$!" || { cat "$dir/nginx/error.log" >&2; exit 1; }
        cmp <(curl -sf "http://127.0.0.1:$g_port/rss.xml") "$dir/out/rss.xml" || { echo "gazette serve does not serve out/rss.xml as built" >&2; exit 1; }
        cmp <(curl -sf "http://127.0.0.1:$n_port/rss.xml") "$dir/out/rss.xml"
        etag() { curl -sfI "$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" { print $2 }'; }
        for mode in 200 304; do
            g_rates=() n_rates=()
            for run in $(seq "$RUNS"); do
                for side in gazette nginx; do
                    port=$g_port
                    [ "$side" = nginx ] && port=$n_port
                    url="http://127.0.0.1:$port/rss.xml"
                    headers=()
                    if [ "$mode" = 304 ]; then
                        tag=$(etag "$url")
                        code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $tag" "$url")
                        [ "$code" = 304 ] || { echo "$side answers $code, not 304, to If-None-Match: $tag" >&2; exit 1; }
                        headers=(-H "If-None-Match: $tag")
                    fi
                    rate=$(wrk -t2 -c64 -d5s "${headers[@]}" "$url" | awk '/^Requests\/sec/ { printf "%.0f", $2 }')
                    if [ "$side" = gazette ]; then g_rates+=("$rate"); else n_rates+=("$rate"); fi
                done
                log "serve $mode run $run: gazette ${g_rates[-1]}/s, nginx ${n_rates[-1]}/s"
            done
            g=$(median "${g_rates[@]}") s=$(median "${n_rates[@]}")
            ratio=$(calc "$g / $s")
            result "Serve /rss.xml, $mode (requests/s)" "$(thousands "$g")" "nginx: $(thousands "$s")" "$ratio" ">= 0.5" "$(met "$ratio >= 0.5")"
            note "Serve $mode: wrk -t2 -c64 -d5s, $(thousands "$(stat -c %s "$dir/out/rss.xml")")-byte rss.xml; gazette ${g_rates[*]}/s, nginx ${n_rates[*]}/s."
        done
    fi
fi

# ---------------------------------------------------------------------------------------------
# 7. The clean release build (issue 16): what the README's first command compiles on a fresh
# machine, into an empty target folder, once (about 3 minutes on 2 cores); last, so that nothing
# else runs beside it. `bench/clean_build.sh` compares two commits' clean builds.
if wanted clean; then
    target=$WORK/clean-target
    rm -rf "$target"
    log "clean build into $target"
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(now)
    CARGO_TARGET_DIR=$target /usr/bin/time -f "%U %S" -o "$WORK/clean-time.txt" cargo build --release --locked --quiet
    t=$(calc "$(now) - $start" 0)
    cpu=$(awk '{ printf "%.0f", $1 + $2 }' "$WORK/clean-time.txt")
    rm -rf "$target"
    result "Clean cargo build --release (s)" "$t" "-" "-" "< 180" "$(met "$t < 180")"
    note "Clean build: $t s of wall clock, $cpu CPU-seconds, $(nproc) cores, load average before it $load; this machine's speed drifts with its other tenants (see \"The clean build at the edge\")."
fi

# ---------------------------------------------------------------------------------------------
# The table
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock examples bench || commit="$commit (with uncommitted changes)"
mem_gib=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
elapsed=$(($(date +%s) - STARTED))
section=$(
    echo "## Results (bench/run.sh)"
    echo
    echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores and $mem_gib GiB of memory (shared with other work),"
    echo "commit $commit; median of $RUNS runs per side, sides alternating; the whole run took $((elapsed / 60)) min $((elapsed % 60)) s."
    echo
    echo "| measurement | Gazette | reference | ratio | goal | |"
    echo "|---|---:|---:|---:|---|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$RESULTS"
    echo
    sed 's/^/- /' "$NOTES"
)
echo
echo "$section"
if [ "$ONLY" != "$ALL" ]; then
    log "a subset (ONLY=$ONLY): BENCHMARKS.md left alone"
    exit 0
fi
python3 - "$section" <<'PY'
import pathlib, re, sys
section = sys.argv[1].rstrip() + "\n"
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text() if path.exists() else "# Benchmarks\n"
pattern = re.compile(r"^## Results \(bench/run\.sh\)\n.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
else:
    head, sep, rest = text.partition("\n## ")
    text = head.rstrip() + "\n\n" + section + ("\n## " + rest if sep else "")
path.write_text(text)
PY
log "BENCHMARKS.md updated"
