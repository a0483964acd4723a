#!/usr/bin/env bash
# The long run of the property tests (issue 27): tests/hostile_input.rs with CASES cases per parser
# instead of the 2,000 that `cargo test` runs, in a release build. Every parser of outside input
# (digests, CSV import, the subscribe form, signed tokens, mbox splitting, reading maildirs and
# folders, the bounce classifier) gets that many hostile variants of real inputs; none may panic.
#
#   bench/property.sh [CASES] [SEED]        # default 100000 cases, the tests' own seed
#   PROFILE=dev bench/property.sh 20000     # a debug build instead: no release build to wait for
#
# Prints the commit, the machine and one line per parser (cases, seconds, failures, what became of
# the cases), and exits non-zero when any case failed. The whole output is in
# target/property.log; failing inputs are saved in target/tmp/hostile-input/<parser>/, each with
# the command that replays it alone.
set -euo pipefail
CASES=${1:-100000} SEED=${2:-0x6a2e7e27}
cd "$(dirname "$0")/.."
profile=(--release)
if [ "${PROFILE:-release}" = dev ]; then profile=(); fi
log=target/property.log
mkdir -p target

changes=$(git diff --quiet HEAD -- src tests Cargo.toml Cargo.lock || echo ", with uncommitted changes")
echo "commit $(git rev-parse --short HEAD)$changes; $(nproc) cores; ${PROFILE:-release} build; $CASES cases per parser; seed $SEED"
status=0
GAZETTE_PROPERTY_CASES=$CASES GAZETTE_PROPERTY_SEED=$SEED \
    cargo test "${profile[@]}" --test hostile_input -- --nocapture --test-threads=2 >"$log" 2>&1 || status=$?
grep -E '^[a-z]+: [0-9]+ cases from' "$log" || true
grep -E '^test result' "$log" || tail -20 "$log"
if [ "$status" -ne 0 ]; then
    echo "failed: the cases and how to replay them are in $log"
fi
exit "$status"
