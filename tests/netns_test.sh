#!/usr/bin/env bash
# Real network faults across hosts: a manager and 2 workers in network namespaces on a
# bridge (scripts/netns-cluster), over the tcp provider.
#   1. cut test: worker host 1 loses all its packets (nftables, both directions) for 3 s
#      in the middle of a jacobi run; the answer must still be exact, the manager must
#      have lost the worker, and the worker must be back or replaced.
#   2. long cut test: the same for 5 s, longer than CALYPSO_MANAGER_TIMEOUT_MS (4 s): the
#      worker must start again as a new worker by itself once the link is back.
#   3. rate test: every link limited to 1 Gbit/s by tc tbf; matmul must verify.
#   4. rank launch test: three processes started as srun starts them (SLURM_PROCID), one
#      per host, without calypso-run; jacobi must verify with 2 workers.
#   5. hosts test: calypso-run --hosts on h0 starts a worker on h1 and h2 through a remote
#      shell (tests/fake_rsh.sh for ssh); jacobi must verify with 2 workers.
# Exits 77 (skipped) without root, network namespaces, nftables or tc. Bounded in time;
# leaves no namespace behind (checked). BUILDDIR selects the build (default ./build).
# Namespaces are named calypso-t<PID>-* so that two runs of this test cannot collide.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=${BUILDDIR:-$repo/build}
cluster=$repo/scripts/netns-cluster
export CALYPSO_NETNS_PREFIX=${CALYPSO_NETNS_PREFIX:-calypso-t$$}
prefix=$CALYPSO_NETNS_PREFIX

skip() { echo "netns_test: SKIPPED: $*"; exit 77; }
fail() { echo "netns_test: FAIL: $*"; failures=$((failures + 1)); }

[[ $(id -u) == 0 ]] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "ip (iproute2) is not installed (scripts/setup installs it)"
ip netns list >/dev/null 2>&1 || skip "'ip netns' is not available"
command -v nft >/dev/null || skip "nft (nftables) is not installed (scripts/setup installs it)"
command -v tc >/dev/null || skip "tc (iproute2) is not installed"
command -v timeout >/dev/null || skip "timeout (coreutils) is not available"
# can this process really create one (a container may forbid it)?
if ! ip netns add "$prefix-br" 2>/dev/null; then skip "cannot create a network namespace here"; fi
ip netns del "$prefix-br"

for f in "$builddir/src/tools/calypso-run" "$builddir/examples/jacobi" "$builddir/examples/matmul"; do
  [[ -x $f ]] || { echo "netns_test: FAIL: $f is missing (build first: ninja -C $builddir)"; exit 1; }
done
export BUILDDIR=$builddir

failures=0
out=$(mktemp -d /tmp/netns_test.XXXXXX)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "$cluster" down >/dev/null 2>&1 || true      # only if a run was killed outright
  rm -rf "$out"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run NAME SECONDS ARGS... : runs the cluster, bounded twice (its own --timeout and an
# outer timeout that also covers setup and teardown); output in $out/NAME.log
run() {
  local name=$1 limit=$2; shift 2
  local rc=0
  timeout -k 15 "$((limit + 60))" "$cluster" run --timeout "$limit" "$@" >"$out/$name.log" 2>&1 || rc=$?
  sed "s/^/[$name] /" "$out/$name.log"
  return "$rc"
}

# ---- 1. cut worker host 1 off at 1.5 s for 3 s --------------------------------------
# The link is back at 4.5 s; the run must last well beyond that for the worker to return.
# 4000 sweeps (64000 segments) take ~10-12 s here; 2000 once ended at 5.2 s on a faster
# host, before the link was restored.
echo "netns_test: cut test: jacobi 512 4000 16 on 3 hosts, h1 cut off (nftables, both directions) at 1.5 s for 3 s"
rc=0
CALYPSO_SUSPECT_MS=1000 run cut 180 --hosts 3 --cut 1:1.5:3 -- "$builddir/examples/jacobi" 512 4000 16 || rc=$?
log=$out/cut.log
((rc == 0)) || fail "cut test: exit code $rc (expected 0)"
grep -q '^jacobi: verified' "$log" || fail "cut test: no 'jacobi: verified'"
grep -q "cut $prefix-h1 off" "$log" || fail "cut test: the run ended before the cut (make it longer)"
if grep -q 'lost worker' "$log"; then
  if grep -q 'starting a replacement' "$log"; then
    echo "netns_test: cut test: the manager lost the cut-off worker; it exited during the cut and a replacement joined after it"
  elif grep -q 'is back after being suspected' "$log"; then
    echo "netns_test: cut test: the manager lost the cut-off worker and took it back"
  else
    fail "cut test: the cut-off worker neither came back nor was replaced after the link was restored"
  fi
else
  fail "cut test: the manager never lost the cut-off worker (expected 'lost worker' with CALYPSO_SUSPECT_MS=1000)"
fi
grep -q "restored $prefix-h1" "$log" || fail "cut test: the run ended before the link was restored (make it longer)"
grep 'wall time' "$log" | sed 's/^netns-cluster: /netns_test: cut test: /'

# ---- 2. a cut longer than CALYPSO_MANAGER_TIMEOUT_MS ---------------------------------
# Both sides give up on each other during the cut. The worker then starts again as a new
# worker (sched/start_again.hpp): its new connection goes through once the link is back,
# while the old one's retransmissions would have waited seconds longer. No replacement
# (--no-replace): the worker must come back by itself, and take part in the job again.
echo "netns_test: long cut test: jacobi 512 4000 16 on 3 hosts, h1 cut off at 1.5 s for 5 s, CALYPSO_MANAGER_TIMEOUT_MS=4000"
rc=0
CALYPSO_SUSPECT_MS=1000 CALYPSO_MANAGER_TIMEOUT_MS=4000 CALYPSO_STATS=text \
  run longcut 180 --hosts 3 --no-replace --cut 1:1.5:5 -- "$builddir/examples/jacobi" 512 4000 16 || rc=$?
log=$out/longcut.log
((rc == 0)) || fail "long cut test: exit code $rc (expected 0)"
grep -q '^jacobi: verified' "$log" || fail "long cut test: no 'jacobi: verified'"
grep -q "restored $prefix-h1" "$log" || fail "long cut test: the run ended before the link was restored (make it longer)"
grep -q 'tries to join again as a new one' "$log" || fail "long cut test: the cut-off worker did not try to join again"
grep -q 'joined again, as a new worker' "$log" || fail "long cut test: the cut-off worker did not join again"
grep -q 'worker exiting' "$log" && fail "long cut test: a worker exited: $(grep 'worker exiting' "$log" | head -1)"
grep -Eq 'calypso\[worker 3\]: [1-9][0-9]* segments' "$log" || fail "long cut test: the worker that joined again (worker 3) ran no segment"
grep 'wall time' "$log" | sed 's/^netns-cluster: /netns_test: long cut test: /'

# ---- 3. every link at 1 Gbit/s ------------------------------------------------------
echo "netns_test: rate test: matmul 512 48 on 3 hosts, every link limited to 1gbit by tc tbf"
rc=0
run rate 180 --hosts 3 --rate 1gbit -- "$builddir/examples/matmul" 512 48 || rc=$?
log=$out/rate.log
((rc == 0)) || fail "rate test: exit code $rc (expected 0)"
grep -q '^matmul: verified' "$log" || fail "rate test: no 'matmul: verified'"
grep -q 'tbf rate 1gbit' "$log" || fail "rate test: the links were not rate-limited"
grep 'wall time' "$log" | sed 's/^netns-cluster: /netns_test: rate test: /'

# ---- 4. a rank launch across hosts -----------------------------------------------------
# As srun starts a job (every process the same program, its rank in SLURM_PROCID), one
# process per host and no calypso-run: rank 0 manages, the others find its address in a
# directory all of them see (a shared file system on a real cluster; /tmp here).
echo "netns_test: rank launch test: jacobi 512 400 16, ranks 0-2 on 3 hosts, SLURM_PROCID and CALYPSO_RENDEZVOUS"
"$cluster" up 3 >"$out/ranks-up.log" 2>&1 || fail "rank launch test: cannot set up the hosts: $(tail -1 "$out/ranks-up.log")"
rendezvous=$out/rendezvous
mkdir -p "$rendezvous"
rank_pids=()
for r in 2 1 0; do
  # The hosts share this machine's name and /proc: no shared-memory paths between them.
  ip netns exec "$prefix-h$r" env CALYPSO_LOCAL_READS=0 CALYPSO_LOCAL_RESULTS=0 CALYPSO_LOCAL_MESSAGES=0 \
    IPATH_NO_BACKTRACE=1 CALYPSO_RENDEZVOUS="$rendezvous" SLURM_PROCID=$r SLURM_NTASKS=3 SLURM_JOB_ID=$$ SLURM_STEP_ID=0 \
    timeout -k 5 120 "$builddir/examples/jacobi" 512 400 16 >"$out/rank$r.log" 2>&1 &
  rank_pids[r]=$!
done
for r in 0 1 2; do
  rc=0
  wait "${rank_pids[r]}" || rc=$?
  sed "s/^/[rank $r] /" "$out/rank$r.log"
  ((rc == 0)) || fail "rank launch test: rank $r exited with $rc (expected 0)"
done
grep -q '^jacobi: verified' "$out/rank0.log" || fail "rank launch test: no 'jacobi: verified' from rank 0"
grep -q ', 2 workers,' "$out/rank0.log" || fail "rank launch test: rank 0 did not run with the 2 other ranks as workers"
[[ -z $(ls -A "$rendezvous") ]] || fail "rank launch test: left in the rendezvous directory: $(ls -A "$rendezvous")"
"$cluster" down >/dev/null 2>&1 || fail "rank launch test: cannot take the hosts down"

# ---- 5. calypso-run --hosts across hosts ------------------------------------------------
# The manager's calypso-run in h0 starts a worker on h1 and h2 through a remote shell
# (tests/fake_rsh.sh stands in for ssh: it runs the command in the namespace of that
# name). The manager listens on h0's address, which only the namespaces reach.
echo "netns_test: hosts test: calypso-run --hosts h1,h2 in h0, jacobi 512 400 16"
"$cluster" up 3 >"$out/hosts-up.log" 2>&1 || fail "hosts test: cannot set up the hosts: $(tail -1 "$out/hosts-up.log")"
rc=0
ip netns exec "$prefix-h0" env CALYPSO_LOCAL_READS=0 CALYPSO_LOCAL_RESULTS=0 CALYPSO_LOCAL_MESSAGES=0 \
  CALYPSO_RSH="$repo/tests/fake_rsh.sh" \
  timeout -k 5 120 "$builddir/src/tools/calypso-run" --bind 198.18.0.1:7100 --hosts "$prefix-h1,$prefix-h2" \
  "$builddir/examples/jacobi" 512 400 16 >"$out/hosts.log" 2>&1 || rc=$?
sed "s/^/[hosts] /" "$out/hosts.log"
((rc == 0)) || fail "hosts test: exit code $rc (expected 0)"
grep -q '^jacobi: verified' "$out/hosts.log" || fail "hosts test: no 'jacobi: verified'"
grep -q ', 2 workers,' "$out/hosts.log" || fail "hosts test: the job did not run with the 2 remote workers"
grep -q "starting 1 worker on $prefix-h2" "$out/hosts.log" || fail "hosts test: no worker started on h2"
"$cluster" down >/dev/null 2>&1 || fail "hosts test: cannot take the hosts down"

# ---- nothing left behind -------------------------------------------------------------
left=$(ip netns list | awk '{print $1}' | grep -F -- "$prefix-" || true)
[[ -z $left ]] || fail "namespaces left behind: $(echo $left)"

if ((failures)); then
  echo "netns_test: $failures failure(s)"
  exit 1
fi
echo "netns_test: PASS"
