#!/usr/bin/env bash
# Same output (issue 29): two builds of Gazette, given the same inputs, write the same bytes. For
# the example project and for a corpus of --nasty digests it runs, with each binary: a round of the
# scheduler that publishes and sends the due issue to the outbox, a drafts build, a preview, a test
# send and a full rebuild from a cold cache; then it compares every file written, byte for byte.
#
#   bench/same_output.sh BEFORE_BIN AFTER_BIN [DIGESTS]     DIGESTS: corpus size (default 2000)
#   bench/same_output.sh REV                                builds REV (e.g. fc26eb4) and this tree
#
# What differs by design between two runs of one binary is set aside before comparing, and only
# that: the Date header (the wall clock of the send), the MIME boundary (random), the Message-ID's
# random part and the moments a send started and finished (`status --json`). The signed links are
# the same because both runs sign with one GAZETTE_SECRET.
# Exit 0 when both trees are identical, 1 with the differing files listed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
COUNT=${3:-2000}

if [ $# -eq 1 ]; then
    rev=$1
    git -C "$ROOT" worktree add -q --detach "$WORK/before-src" "$rev"
    (cd "$WORK/before-src" && CARGO_TARGET_DIR=${BEFORE_TARGET:-$ROOT/target/same-output-before} \
        cargo build --locked --quiet --bin gazette)
    git -C "$ROOT" worktree remove --force "$WORK/before-src"
    BEFORE=${BEFORE_TARGET:-$ROOT/target/same-output-before}/debug/gazette
    (cd "$ROOT" && cargo build --locked --quiet --bin gazette)
    AFTER=$ROOT/target/debug/gazette
else
    BEFORE=$1 AFTER=$2
fi

# A project: the repository's example (digests, templates, publish.toml, five subscribers), or
# the same configuration over a generated corpus.
project() { # DIR CORPUS(example|nasty)
    local dir=$1
    mkdir -p "$dir/subscribers"
    cp -r "$ROOT/templates" "$ROOT/publish.toml" "$dir/"
    cp "$ROOT/subscribers/example.csv" "$dir/subscribers/"
    if [ "$2" = example ]; then
        cp -r "$ROOT/digests" "$dir/"
    else
        python3 "$SHARED/corpus/gen_digests.py" --count "$COUNT" --seed 29 --start 2023-01-02 --days 200 --nasty \
            "$dir/digests" >/dev/null
    fi
    # The build cache trusts a file by its stamp once it is 2 s old: old stamps on both sides, so
    # that both take the same path through the cache whatever the time between copy and build.
    find "$dir" -type f -exec touch -d '2023-01-01 00:00:00' {} +
}

# Every command whose output is compared, as a user would type them, at a fixed moment.
exercise() { # BIN DIR NOW WEEK
    local bin=$1 dir=$2 now=$3 week=$4
    (
        cd "$dir"
        export GAZETTE_ALLOW_PLACEHOLDERS=1 NO_COLOR=1 GAZETTE_SECRET=same-output-secret-of-sufficient-length
        "$bin" subscribers import subscribers/example.csv
        "$bin" --now "$now" run --once
        "$bin" --now "$now" build --drafts
        "$bin" --now "$now" preview --week "$week"
        "$bin" --now "$now" send --test --week "$week"
        "$bin" --now "$now" status --json
        "$bin" --now "$now" issues --json
        rm -rf .gazette-cache out
        "$bin" --now "$now" build --all
    ) >"$dir.log" 2>&1 || { echo "$bin failed in $dir:" >&2; tail -20 "$dir.log" >&2; exit 1; }
    # The log's own time stamps differ from run to run; the messages must not.
    sed -E 's/^[0-9T:.-]+Z +//' "$dir.log" >"$dir/commands.log"
    rm -rf "$dir/.gazette-cache" "$dir/subscribers" "$dir/digests" "$dir/templates"
}

# Sets aside, in the .eml files and the commands' output, only what is random or the wall clock.
normalise() { # DIR
    find "$1" -type f \( -name '*.eml' -o -name '*.log' -o -name '*.json' \) -print0 | xargs -0 -r sed -i -E \
        -e 's/^Date: .*/Date: (send time)/' \
        -e 's/([Bb]oundary=|^--)"?[A-Za-z0-9]{40}"?/\1(boundary)/' \
        -e 's/\.[0-9a-f]{16,}@/.(random)@/g' \
        -e 's/"(sent_at|started_at|finished_at)": *"[^"]*"/"\1": "(time)"/g'
    # The outbox's file names carry the Message-ID.
    find "$1" -name '*.eml' | while read -r f; do
        local to
        to="$(dirname "$f")/$(basename "$f" | sed -E 's/\.[0-9a-f]{16,}@/.(random)@/')"
        [ "$f" = "$to" ] || mv "$f" "$to"
    done
}

status=0
for corpus in example nasty; do
    case $corpus in
    example) now=2023-07-24T08:05:00+01:00 week=2023-07-17 ;;
    nasty) now=2023-07-24T08:05:00+01:00 week=2023-07-17 ;;
    esac
    for side in before after; do
        bin=$BEFORE
        [ $side = after ] && bin=$AFTER
        project "$WORK/$corpus-$side" $corpus
        exercise "$bin" "$WORK/$corpus-$side" $now $week
        normalise "$WORK/$corpus-$side"
    done
    files=$(find "$WORK/$corpus-before" -type f | wc -l)
    if diff -r -q "$WORK/$corpus-before" "$WORK/$corpus-after" >"$WORK/$corpus.diff"; then
        echo "$corpus: $files files, identical"
    else
        echo "$corpus: differs ($files files before):"
        sed "s#$WORK/##g" "$WORK/$corpus.diff" | head -20
        diff -r "$WORK/$corpus-before" "$WORK/$corpus-after" | head -40
        status=1
    fi
done
exit $status
