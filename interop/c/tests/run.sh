#!/bin/sh
# Run the C test binaries given as arguments, each optionally under
# $LANCHAT_TEST_WRAPPER (e.g. valgrind), and print one total line
# "c: N passed, M failed". A binary that fails without printing its own
# "c <name>: N passed, M failed" line counts as one failure.
set -f # the wrapper is split into words unquoted; its patterns must not glob
passed=0
failed=0
log=$(mktemp) || exit 1
rcfile=$(mktemp) || exit 1
# The servers the tests start make a TLS certificate in $XDG_STATE_HOME: never in the real home.
state=$(mktemp -d) || exit 1
trap 'rm -f "$log" "$rcfile"; rm -rf "$state"' EXIT
XDG_STATE_HOME=$state
export XDG_STATE_HOME

for t in "$@"; do
    # The braces keep the exit status that the pipe through tee would hide.
    { $LANCHAT_TEST_WRAPPER "$t"; echo $? >"$rcfile"; } 2>&1 | tee "$log"
    rc=$(cat "$rcfile")
    counts=$(sed -n 's/^c [a-z0-9_]*: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1 \2/p' "$log" | tail -n 1)
    if [ -n "$counts" ]; then
        p=${counts% *}
        f=${counts#* }
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            echo "$t: exit status $rc (valgrind errors or a crash after the summary)"
            failed=$((failed + 1))
        fi
    else
        echo "$t: no summary line (exit status $rc)"
        failed=$((failed + 1))
    fi
done

echo "c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
