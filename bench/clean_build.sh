#!/usr/bin/env bash
# The clean release build (issue 16): `cargo build --release --locked --timings` into an empty
# target folder, for a base commit and for the working tree, alternating, ROUNDS times each. Prints
# each build's wall clock and CPU time, then the three longest units of its timing report.
#
#   bench/clean_build.sh BASE_REV [ROUNDS] [WORK]
#
# The base is checked out as a git worktree in WORK (default /tmp/gazette-clean-build); the target
# folders live there too and are deleted before each build. This machine's speed moves with its
# other tenants: compare within a pair, and the units' shares across pairs.
set -euo pipefail
BASE=$1 ROUNDS=${2:-2} WORK=${3:-/tmp/gazette-clean-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$WORK"
rm -rf "$WORK/base"
git -C "$ROOT" worktree add --quiet --force --detach "$WORK/base" "$BASE" >/dev/null
trap 'git -C "$ROOT" worktree remove --force "$WORK/base"' EXIT

# The longest units of a cargo timing report (its UNIT_DATA), with their share of the units' time.
longest() {
    python3 - "$1" <<'PY'
import json, re, sys
html = open(sys.argv[1]).read()
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S).group(1))
total = sum(u["duration"] for u in units)
print(f"  units: {len(units)}, {total:.1f} s in all")
for u in sorted(units, key=lambda u: -u["duration"])[:3]:
    print(f"  {u['duration']:6.1f} s {100 * u['duration'] / total:5.1f}%  {u['name']} {u.get('target', '').strip()}")
PY
}

for round in $(seq "$ROUNDS"); do
    for side in base tree; do
        src=$ROOT
        [ "$side" = base ] && src=$WORK/base
        target=$WORK/target-$side
        rm -rf "$target"
        (cd "$src" && CARGO_TARGET_DIR=$target /usr/bin/time -f "$side, round $round: %e s wall, %U s user, %S s system" \
            cargo build --release --locked --timings 2>&1 | tail -1)
        longest "$target/cargo-timings/cargo-timing.html"
        rm -rf "$target"
    done
done
