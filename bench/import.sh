#!/usr/bin/env bash
# Import benchmark (issue 4): builds the release binary, generates CSV files of 100,000 and
# 1,000,000 subscribers, imports each into a fresh database, and records rows per second and peak
# memory in the "Import" section of BENCHMARKS.md (replacing the previous figures).
# Usage: bench/import.sh            (ROWS=... to change the large size)
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
SMALL=$((ROWS / 10))

if [ ! -x /usr/bin/time ]; then
    echo "GNU time is needed for peak memory: apt-get install -y time" >&2
    exit 2
fi

cargo build --release --locked --quiet
BIN=target/release/gazette

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# email,name with mixed-case addresses; every row distinct.
generate() {
    python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
out.write("email,name\n")
buf = []
for i in range(n):
    buf.append(f"Reader.{i:07d}@Example{i % 97}.org,Reader {i}\n")
    if len(buf) == 10000:
        out.write("".join(buf)); buf.clear()
out.write("".join(buf))
PY
}

# run ROWS -> prints "seconds peak_kib"
run() {
    local rows=$1 dir="$WORK/run-$1"
    mkdir -p "$dir"
    generate "$rows" > "$dir/subscribers.csv"
    printf '[paths]\ndatabase = "%s/gazette.db"\n' "$dir" > "$dir/publish.toml"
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$dir/time.txt" "$BIN" --config "$dir/publish.toml" subscribers import "$dir/subscribers.csv" > "$dir/out.txt"
    end=$(date +%s.%N)
    local expected="added $rows, unchanged 0, skipped 0 (unsubscribed or bounced), invalid 0"
    if [ "$(cat "$dir/out.txt")" != "$expected" ]; then
        echo "unexpected import report: $(cat "$dir/out.txt")" >&2
        exit 1
    fi
    local count
    count=$(sqlite3 "$dir/gazette.db" 'SELECT count(*) FROM subscribers')
    [ "$count" = "$rows" ] || { echo "database holds $count rows, expected $rows" >&2; exit 1; }
    local peak
    peak=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
    echo "$(echo "$end - $start" | bc -l) $peak $(du -k "$dir/subscribers.csv" | cut -f1)"
}

read -r small_s small_kib small_csv < <(run "$SMALL")
read -r big_s big_kib big_csv < <(run "$ROWS")

rate() { printf '%.0f' "$(echo "$1 / $2" | bc -l)"; }
# 1234567 -> 1,234,567
thousands() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
big_rate=$(rate "$ROWS" "$big_s")
small_rate=$(rate "$SMALL" "$small_s")

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src subscribers/migrations Cargo.toml Cargo.lock || commit="$commit (with uncommitted changes)"
mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)

section=$(cat <<MD
## Import

\`bench/import.sh\`: \`gazette subscribers import\` of a generated CSV (\`email,name\`, every row new)
into a fresh database, release build, wall clock including process start and migrations.

| rows | CSV | time | rows per second | peak RSS |
|---:|---:|---:|---:|---:|
| $(thousands "$SMALL") | $((small_csv / 1024)) MiB | $(printf '%.2f' "$small_s") s | $(thousands "$small_rate") | $((small_kib / 1024)) MiB |
| $(thousands "$ROWS") | $((big_csv / 1024)) MiB | $(printf '%.2f' "$big_s") s | $(thousands "$big_rate") | $((big_kib / 1024)) MiB |

Measured $(date -u +%Y-%m-%d) on $(nproc) cores and ${mem_gib} GiB of memory (shared with other work), commit $commit.
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
