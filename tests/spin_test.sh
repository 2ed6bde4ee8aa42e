#!/usr/bin/env bash
# Model-checks the manager-worker protocol with spin (docs/protocol.pml; docs/PROTOCOL.md,
# "Model checking"). For each configuration below, an exhaustive safety search
# (assertions, invalid end states) and a liveness search (ltl step_ends, ./pan -a -f:
# weak fairness) must both report "errors: 0". Then each deliberately broken variant of
# the model must make spin report the error it was made for: this shows the checks can
# fail. SPIN_FULL=1 also checks the model's default configuration (every fault at once:
# about 8 million states, 2 GB and a minute). Needs spin and gcc (scripts/setup
# installs them); fails, not skips, without them. Each step is bounded with timeout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=$root/docs/protocol.pml

fail() {
  echo "spin_test: FAIL: $*" >&2
  exit 1
}
command -v spin >/dev/null 2>&1 ||
  fail "spin is not installed (Debian package 'spin': apt-get install -y spin, or run scripts/setup)"
command -v gcc >/dev/null 2>&1 || fail "gcc is not installed (spin's verifiers are C programs)"
[[ -f $model ]] || fail "$model not found"

work=$(mktemp -d "${TMPDIR:-/tmp}/spin_test.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
cp "$model" protocol.pml

# name|spin flags (sizes and fault budgets; see the top of docs/protocol.pml)
configs=(
  "2 workers, 2 segments, a crash or leave, a false suspicion|-DNW=2 -DNS=2 -DMAXDEPART=1 -DMAXFALSE=1 -DMAXOVERTAKE=0"
  "2 workers, 2 segments, a request overtaking a result, a false suspicion|-DNW=2 -DNS=2 -DMAXDEPART=0 -DMAXFALSE=1 -DMAXOVERTAKE=1"
  "2 workers, 3 segments, a crash or leave, a false suspicion|-DNW=2 -DNS=3 -DMAXDEPART=1 -DMAXFALSE=1 -DMAXOVERTAKE=0"
  "3 workers, 2 segments, no faults|-DNW=3 -DNS=2 -DMAXDEPART=0 -DMAXFALSE=0 -DMAXOVERTAKE=0"
  "pipeline 2: 2 workers, 2 segments, a crash or leave, a false suspicion|-DPIPE=2 -DNW=2 -DNS=2 -DMAXDEPART=1 -DMAXFALSE=1 -DMAXOVERTAKE=0"
  "pipeline 2: 2 workers, 2 segments, a request overtaking a result, a false suspicion|-DPIPE=2 -DNW=2 -DNS=2 -DMAXDEPART=0 -DMAXFALSE=1 -DMAXOVERTAKE=1"
)
if [[ ${SPIN_FULL:-0} == 1 ]]; then
  configs+=("2 workers, 2 segments, every fault at once (the model's defaults)|")
fi
# mutation|spin flags|search (safety or liveness)|what spin must report
mutations=(
  "BROKEN_APPLY_TWICE|${configs[0]#*|}|safety|assertion violated (kept[s]==0)"
  "BROKEN_PARTIAL|${configs[0]#*|}|safety|assertion violated ((part_s[w]!=s)||(part_a[w]!=a))"
  "BROKEN_NO_REREQUEST|${configs[0]#*|}|safety|invalid end state"
  "BROKEN_NO_REREQUEST|${configs[0]#*|}|liveness|acceptance cycle"
  "BROKEN_DROP_HELD|${configs[4]#*|}|liveness|acceptance cycle"
)

# generate "FLAGS": spin -a, writes pan.c
generate() {
  local flags
  read -ra flags <<<"$1"
  timeout 60 spin "${flags[@]}" -a protocol.pml >spin.log 2>&1 || { cat spin.log; fail "spin $1 -a failed"; }
}
# build NAME safety|liveness: compiles pan.c into NAME
build() {
  local defs=()
  [[ $2 == safety ]] && defs=(-DSAFETY -DNOCLAIM)
  # COLLAPSE compresses stored states: the largest configuration takes 0.5 GB instead of 2
  timeout 300 gcc -w -O2 -DCOLLAPSE "${defs[@]}" -o "$1" pan.c >"$1.gcc.log" 2>&1 ||
    { cat "$1.gcc.log"; fail "gcc failed"; }
}
# search BINARY safety|liveness SECONDS LOG: runs the verifier
search() {
  local args=(-m100000) rc=0
  [[ $2 == liveness ]] && args+=(-a -f)
  timeout "$3" "./$1" "${args[@]}" >"$4" 2>&1 || rc=$?
  ((rc != 124)) || fail "./$1 ${args[*]} did not finish within $3 s"
}
# figures LOG: "N states, stored (M visited), T s"
figures() {
  local stored elapsed
  stored=$(grep -E 'states, stored' "$1" | sed -E 's/^ *//; s/ *$//')
  elapsed=$(grep -E 'elapsed time' "$1" | sed -E 's/.*elapsed time ([0-9.e+]+) seconds.*/\1/')
  echo "$stored, $elapsed s"
}

start=$SECONDS
for entry in "${configs[@]}"; do
  name=${entry%%|*} spin_flags=${entry#*|}
  generate "$spin_flags"
  # the two compilations (about 2 s each) side by side
  build pan_safety safety &
  pid=$!
  build pan_liveness liveness || exit 1
  wait "$pid" || exit 1
  for kind in safety liveness; do
    search "pan_$kind" "$kind" 600 "$kind.log"
    if ! grep -q 'errors: 0$' "$kind.log" || grep -qE 'Search not completed|max search depth too small' "$kind.log"; then
      cat "$kind.log"
      if [[ -f protocol.pml.trail ]]; then
        read -ra fl <<<"$spin_flags"
        timeout 60 spin "${fl[@]}" -t -p protocol.pml | tail -n 80 || true
      fi
      fail "$name: $kind search found an error (spin flags: ${spin_flags:-none})"
    fi
    echo "spin_test: $name: $kind: errors: 0, $(figures "$kind.log")"
  done
done

for entry in "${mutations[@]}"; do
  IFS='|' read -r mutation flags kind expected <<<"$entry"
  rm -f protocol.pml.trail
  generate "$flags -D$mutation"
  build "pan_$kind" "$kind"
  search "pan_$kind" "$kind" 300 "$kind.log"
  if grep -q 'errors: 0$' "$kind.log" || ! grep -qF "$expected" "$kind.log"; then
    cat "$kind.log"
    fail "mutation $mutation: the $kind search did not report \"$expected\": the check does not catch it"
  fi
  echo "spin_test: mutation $mutation: $kind search reports \"$expected\", as it must"
done

echo "spin_test: PASS (${#configs[@]} configurations, ${#mutations[@]} mutation checks, $((SECONDS - start)) s)"
