#!/usr/bin/env bash
# Import benchmark (issue 4): builds the release binary, generates CSV files of 500,000, 1,000,000
# and 2,000,000 subscribers (addresses in random order, as real lists are), imports each into a
# fresh database, and records time, rows per second, CPU time and peak memory in the "Import"
# section of BENCHMARKS.md (replacing the previous figures).
# Usage: bench/import.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=(500000 1000000 2000000)

if [ ! -x /usr/bin/time ]; then
    echo "GNU time is needed for peak memory: apt-get install -y time" >&2
    exit 2
fi
for tool in python3 sqlite3 bc; do
    command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done

cargo build --release --locked --quiet
BIN=target/release/gazette

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# email,name; mixed-case addresses, every one distinct, in a fixed random order.
generate() {
    python3 - "$1" <<'PY'
import random, sys
n = int(sys.argv[1])
ids = list(range(n))
random.Random(4).shuffle(ids)
out = sys.stdout
out.write("email,name\n")
for start in range(0, n, 10000):
    out.write("".join(f"Reader.{i:07d}@Example{i % 97}.org,Reader {i}\n" for i in ids[start:start + 10000]))
PY
}

# run ROWS -> prints "seconds cpu_seconds peak_kib csv_kib load"
run() {
    local rows=$1 dir="$WORK/run-$1"
    mkdir -p "$dir"
    generate "$rows" > "$dir/subscribers.csv"
    printf '[paths]\ndatabase = "%s/gazette.db"\n' "$dir" > "$dir/publish.toml"
    local load start end
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    /usr/bin/time -f '%U %S %M' -o "$dir/time.txt" "$BIN" --config "$dir/publish.toml" subscribers import "$dir/subscribers.csv" > "$dir/out.txt"
    end=$(date +%s.%N)
    local expected="added $rows, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 0"
    if [ "$(cat "$dir/out.txt")" != "$expected" ]; then
        echo "unexpected import report: $(cat "$dir/out.txt")" >&2
        exit 1
    fi
    local count
    count=$(sqlite3 "$dir/gazette.db" 'SELECT count(*) FROM subscribers')
    [ "$count" = "$rows" ] || { echo "database holds $count rows, expected $rows" >&2; exit 1; }
    local user sys peak
    read -r user sys peak < "$dir/time.txt"
    echo "$(echo "$end - $start" | bc -l) $(echo "$user + $sys" | bc -l) $peak $(du -k "$dir/subscribers.csv" | cut -f1) $load"
    rm -rf "$dir"
}

# 1234567 -> 1,234,567
thousands() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

table=""
for rows in "${SIZES[@]}"; do
    read -r secs cpu kib csv load < <(run "$rows")
    rate=$(printf '%.0f' "$(echo "$rows / $secs" | bc -l)")
    table+="| $(thousands "$rows") | $((csv / 1024)) MiB | $(printf '%.2f' "$secs") s | **$(thousands "$rate")** | $(printf '%.2f' "$cpu") s | $((kib / 1024)) MiB | $load |"$'\n'
done

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src subscribers/migrations Cargo.toml Cargo.lock || commit="$commit (with uncommitted changes)"
mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)

section=$(cat <<MD
## Import

\`bench/import.sh\`: \`gazette subscribers import\` of a generated CSV (\`email,name\`, every address new,
in random order) into a fresh database; release build; wall-clock time includes process start,
migrations and the final WAL checkpoint. CPU is user + system time of the process; "load" is the
1-minute load average when the run started (this machine is shared, and wall time follows it).

| rows | CSV | time | rows per second | CPU | peak RSS | load |
|---:|---:|---:|---:|---:|---:|---:|
${table}
Measured $(date -u +%Y-%m-%d) on $(nproc) cores and ${mem_gib} GiB of memory, commit $commit.
The target is 200,000 rows per second for 1,000,000 rows, with memory flat as the file grows.
MD
)

python3 - "$section" <<'PY'
import pathlib, re, sys
section = sys.argv[1].rstrip() + "\n"
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured on this machine by the scripts in `bench/`.\n"
pattern = re.compile(r"^## Import\n.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
else:
    text = text.rstrip() + "\n\n" + section
path.write_text(text)
PY

echo "$section"
