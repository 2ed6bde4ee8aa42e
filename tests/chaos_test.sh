#!/usr/bin/env bash
# Runs a short chaos run (scripts/chaos --seconds 25 --min-runs 2 --seed 1) and checks
# that every answer was right and that something actually happened: at least 2 runs and
# 3 events. --min-runs: on a slow host the baselines alone may take most of the 25 s (so
# the runs check guards against scripts/chaos itself; the events one against a quiet run).
# Extra arguments go to scripts/chaos (e.g. --provider shm, --build DIR). Bounded to 300 s.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
out=$(mktemp "${TMPDIR:-/tmp}/chaos_test.XXXXXX")
trap 'rm -f "$out"' EXIT

rc=0
timeout -k 20 300 ./scripts/chaos --seconds 25 --min-runs 2 --seed 1 "$@" >"$out" 2>&1 || rc=$?
cat "$out"
last=$(tail -n 1 "$out")
if [[ $last =~ ^chaos:\ ([0-9]+)\ runs,\ ([0-9]+)\ events,\ 0\ wrong$ ]]; then
  runs=${BASH_REMATCH[1]} events=${BASH_REMATCH[2]}
  if ((rc == 0 && runs >= 2 && events >= 3)); then
    echo "chaos_test: PASS ($runs runs, $events events, 0 wrong)"
    exit 0
  fi
  echo "chaos_test: FAIL: exit code $rc, $runs runs (need >= 2), $events events (need >= 3)"
  exit 1
fi
((rc != 124)) || echo "chaos_test: scripts/chaos did not finish within 300 s"
echo "chaos_test: FAIL: exit code $rc, last line: $last"
exit 1
