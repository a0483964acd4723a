#!/usr/bin/env bash
# The email's weight (issue 13): HTML bytes per seed-sized digest at each step of the size budget,
# for the email template of commit 6f52edb (before) and the current one (after), then the size and
# step of every week of three heavy generated corpora. Prints a table; BENCHMARKS.md keeps a copy.
#
#   bench/email_size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
SEED=digests/000_86102eed948879ef.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet --example email_size --bin gazette
mkdir -p "$work/before"
git show 6f52edb:templates/email.mjml >"$work/before/email.mjml"
git show 6f52edb:templates/email.txt >"$work/before/email.txt"

echo "HTML bytes per seed-sized digest ($(git rev-parse --short HEAD), $(nproc) cores)"
printf '%-16s %8s %8s\n' step before after
paste <(target/release/examples/email_size "$SEED" "$work/before") <(target/release/examples/email_size "$SEED") |
    awk '{ printf "%-16s %8s %8s\n", $1, $2, $4 }'

echo
echo "Heavy weeks with [email] max_html_kb = 90 (the default)"
printf '%-34s %-11s %8s  %s\n' corpus week html step
for args in "--count 80 --days 7" "--count 60 --days 14" "--count 60 --days 14 --nasty"; do
    dir="$work/corpus-${args// /}"
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    python3 "$SHARED/corpus/gen_digests.py" $args "$dir/digests" >/dev/null
    printf '[site]\nbase_url = "https://signals.example.org"\n' >"$dir/publish.toml"
    "$ROOT/target/release/gazette" --config "$dir/publish.toml" build --drafts >/dev/null 2>&1 || true
    for week in $(ls "$dir/drafts/issues"); do
        out=$("$ROOT/target/release/gazette" --config "$dir/publish.toml" preview --week "$week" 2>/dev/null)
        html=$(grep '^HTML:' <<<"$out" | sed 's/^HTML: //; s/,.*//')
        step=$(grep '^HTML:' <<<"$out" | sed -n 's/.*max_html_kb = 90: //p')
        printf '%-34s %-11s %8s  %s\n' "$args" "$week" "$html" "${step:-whole}"
    done
done
