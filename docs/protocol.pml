/*
 * Promela model of the Calypso-DSM manager-worker protocol (docs/PROTOCOL.md), checked
 * with spin by tests/spin_test.sh (see PROTOCOL.md, "Model checking"). One manager, NW
 * workers (2 or 3), one parallel step of NS segments (2 or 3). "PROTOCOL.md <section>"
 * names the part of the document a piece of the model stands for; "code:" names the
 * function it follows where the document says less than the code does.
 *
 * Properties:
 *   (a) every segment is applied exactly once: a result is kept only for a segment that
 *       has none yet (assert when keeping), each segment's kept result is applied once
 *       (assert when applying), and every segment was applied once when the job ends;
 *   (b) the step ends: ltl step_ends { <> step_done } (./pan -a -f);
 *   (c) no deadlock: no invalid end state (a process blocked anywhere but at its end);
 *   (d) a partial result is never applied: the result the manager keeps is never one of
 *       which its worker has sent the first chunk and not the last (ghosts part_s,
 *       part_a; a worker that crashes half-way through leaves them set for good).
 *
 * Mutations (spin -DNAME -a ...), each of which spin must reject:
 *   BROKEN_APPLY_TWICE   the manager keeps every complete result without checking that
 *                        its segment is not done yet                    -> (a) fails
 *   BROKEN_PARTIAL       the manager takes a result as complete at its first chunk
 *                                                                       -> (d) fails
 *   BROKEN_NO_REREQUEST  an idle worker never asks again after 5 s of silence: a result
 *                        lost to a suspicion leaves it unused forever   -> (b), (c) fail
 *
 *   BROKEN_DROP_HELD     request_work forgets the assignments it reports consumed
 *                        without taking the worker off their runners: a dropped
 *                        assignment is never run again by that worker  -> (b) fails
 *                        (with PIPE=2; tests/spin_test.sh checks the liveness search)
 *
 * Sizes and fault budgets (spin -DNAME=value): NW, NS, MAXDEPART (crashes + leaves,
 * at most NW-1), MAXFALSE (false suspicions), MAXOVERTAKE (re-requests that overtake),
 * PIPE (CALYPSO_PIPELINE: assignments in flight per worker, 1 or 2).
 *
 * What the model leaves out:
 *   - joining (hello/welcome/refuse): the NW workers have joined when the step opens;
 *   - more than one step: "a result for an older step" and "page_data stale" are what
 *     arrives after the step has ended; write notices and memory versions. After the
 *     step, the manager answers page requests (stale) and leaves request_work, result
 *     chunks and leave unread (they would change nothing the model looks at) until the
 *     program ends the job (shutdown), at any moment;
 *   - the static schedule (Policy::fixed) and the manager's shutdown drain;
 *   - message contents: a result is two chunks (offset 0, last) without bytes, and it is
 *     always valid (malformed results and the "gone" they cause are not modelled); a
 *     segment makes exactly one page fetch, answered ok or stale (never bad_range);
 *   - scheduling policy: unstarted segments first (lowest index first), then a re-run of
 *     any unfinished segment the worker is not running, freely chosen (the real choice,
 *     fewest copies, then queued, then oldest, is one of them); no preferred workers (they come from
 *     an earlier step); CALYPSO_MAX_ATTEMPTS and failure counts (they can fail a step but
 *     never change what is applied) and NO_WORKER_TIMEOUT (one worker always lives);
 *   - time: heartbeats are not messages. "Silent for CALYPSO_SUSPECT_MS" is a manager
 *     event: always possible for a dead worker, at most MAXFALSE times for a live one
 *     (a false suspicion). A suspected live worker's heartbeat arrives at some point (any
 *     message brings it back). "Silent for CALYPSO_MANAGER_TIMEOUT_MS" makes only dead
 *     workers gone; the worker's own timeout on a silent manager is not modelled. The
 *     worker's "nothing for 5 s: request_work again" is bounded (see Worker);
 *   - failures: a worker crashes while idle or between the two chunks of its result
 *     (an assign on its way to a crashed idle worker makes it a crash while running),
 *     and leaves while idle (likewise);
 *   - channels: bounded FIFOs, one per worker and message kind, so that a worker's
 *     messages of different kinds overtake each other (PROTOCOL.md: "the protocol never
 *     relies on order between messages of one sender"); a result's two chunks share one
 *     channel (the reassembly does not depend on their order). A manager->worker channel
 *     that is full stands for a send that fails (the 2 s send timeout).
 */

#ifndef NW
#define NW 2              /* workers: 2 or 3 */
#endif
#ifndef NS
#define NS 2              /* segments of the parallel step: 2 or 3 */
#endif
#ifndef MAXDEPART
#define MAXDEPART (NW-1)  /* crashes and leaves in all: at least one worker stays */
#endif
#ifndef MAXFALSE
#define MAXFALSE 1        /* false suspicions of live workers */
#endif
#ifndef MAXOVERTAKE
#define MAXOVERTAKE 1     /* 5 s re-requests sent while the worker's result is in flight */
#endif
#ifndef PIPE
#define PIPE 1            /* CALYPSO_PIPELINE: assignments held per worker, 1 or 2 */
#endif
#define MAXATT 8          /* attempt numbers are 1..MAXATT-1 (asserted) */
#define NONE 255

/* PROTOCOL.md "Manager, per worker": alive (idle or running), suspected, gone */
#define ALIVE 0
#define SUSPECTED 1
#define GONE 2

/* what the manager's loop is handling (one event per loop turn) */
#define K_NONE 0
#define K_REQUEST 1       /* request_work */
#define K_PAGES 2         /* page_request */
#define K_CHUNK 3         /* result_chunk */
#define K_LEAVE 4         /* leave */
#define K_SUSPECT 5       /* silent too long */
#define K_BEAT 6          /* a suspected worker's heartbeat */
#define K_SHUTDOWN 7      /* the program ends the job */

/* ---- channels: PROTOCOL.md "Messages" ------------------------------------------------ */
/* worker -> manager, main endpoint */
/* room for every request a worker can make while the manager is not reading them (after
   the step, one per held assignment given up as stale, one of them sent when the one
   before it was arriving); a full channel would stand for a send that blocks, which the
   code's does not */
#if PIPE > 1
#define REQCAP (PIPE+3)
#else
#define REQCAP 2
#endif
chan req[NW]  = [REQCAP] of { byte };         /* request_work: the last seq taken */
chan preq[NW] = [1] of { bit };               /* page_request (for the step it runs) */
/* result_chunk: segment, attempt, chunk (1: at offset 0, 2: the last one); room for
   the results of every assignment a worker can hold (with PIPE > 1 one of them arriving)
   and one more, unread (a full one would stand for a send that blocks, which the code's
   does not) */
#if PIPE > 1
chan res[NW]  = [2*(PIPE+2)] of { byte, byte, byte };
#else
chan res[NW]  = [2*(PIPE+1)] of { byte, byte, byte };
#endif
/* worker -> manager, heartbeat endpoint */
chan lv[NW]   = [1] of { bit };               /* leave (SIGTERM) */
/* manager -> worker */
chan asg[NW]   = [2] of { byte, byte, byte }; /* assign: segment, attempt, seq */
chan pdata[NW] = [1] of { bool };             /* page_data: true = stale, false = ok */
chan shut[NW]  = [1] of { bit };              /* shutdown (both endpoints) */

/* ---- manager state ----------------------------------------------------------------- */
/* per worker (code: ManagerLoop::Worker) */
byte wstate[NW];          /* ALIVE, SUSPECTED, GONE */
bool parked[NW];          /* idle: waiting for an assignment */
/* the assignments it holds (sent, no answer yet), oldest first: segment and seq
   (code: Worker::running); the first not arriving is the one it runs, the others wait in
   its queue. Arriving: the first chunk of its result is in, so the worker has run it; it
   takes no pipeline slot, but stays held until the result is complete (code: ran). At
   most one is arriving at a time (a worker sends both chunks of a result together, and
   channels are FIFO), so a worker holds up to PIPE+1. */
#define HS (PIPE+1)
byte held[NW*HS];
byte hseq[NW*HS];
bool harr[NW*HS];
byte nheld[NW];
/* how many it holds that are not arriving (code: Worker::holding) */
#if PIPE > 1
#define NRUN(x) ((nheld[x] > 0 && !harr[(x)*HS]) + (nheld[x] > 1 && !harr[(x)*HS + 1]) + \
                 (nheld[x] > 2 && !harr[(x)*HS + 2]))
#else
#define NRUN(x) ((nheld[x] > 0 && !harr[(x)*HS]) + (nheld[x] > 1 && !harr[(x)*HS + 1]))
#endif
byte nseq[NW];            /* seq of its last assignment (from 1) */
/* results arriving in chunks, by (worker, segment, attempt): bit 0 = chunk 1 received,
   bit 1 = chunk 2 received (code: ManagerLoop::Worker::assemblies) */
byte got[NW*NS*MAXATT];
/* per step (code: EagerScheduler, ManagerLoop::OpenStep) */
bool step_open = true;
bool step_done = false;   /* every segment applied: run_step has returned */
bool done[NS];            /* a result of the segment is kept (the first wins) */
byte attempts[NS];        /* runs started */
byte runners[NS];         /* bit w set: worker w runs the segment */
byte ndone;               /* segments done */

/* ---- ghost state (properties and fault budgets; the protocol does not read it) ------ */
byte kept[NS];            /* (a): results kept, per segment */
byte applied[NS];         /* (a): results applied, per segment */
byte part_s[NW];          /* (d): the result worker w has begun and not finished */
byte part_a[NW];          /*      sending: segment, attempt (NONE: none) */
bool walive[NW];          /* the worker process exists (it did not crash or leave) */
byte departures;          /* crashes and leaves so far */
byte nfalse;              /* false suspicions so far */
byte overtakes;           /* overtaking re-requests so far */

ltl step_ends { <> step_done }

/* ---- the manager's pieces (inlined into Manager: they use its local variables) ------ */

/* Forgets slot x*HS+c of worker x's held assignments (c is the caller's). */
inline drop_held(x) {
  c2 = c;
  do
  :: c2 + 1 < nheld[x] -> held[x*HS + c2] = held[x*HS + c2 + 1];
                          hseq[x*HS + c2] = hseq[x*HS + c2 + 1];
                          harr[x*HS + c2] = harr[x*HS + c2 + 1]; c2++
  :: else -> break
  od;
  nheld[x]--;
  held[x*HS + nheld[x]] = 0;
  hseq[x*HS + nheld[x]] = 0;
  harr[x*HS + nheld[x]] = false
}

/* Abandons every held assignment of worker x with seq <= upto (255: all, also one
   arriving; otherwise an arriving one was sent, not dropped): it no longer runs them
   (code: on_request_work, lose). */
inline abandon_held(x, upto) {
  c = 0;
  do
  :: c < nheld[x] && hseq[x*HS + c] <= upto && (upto == 255 || !harr[x*HS + c]) ->
#ifndef BROKEN_DROP_HELD
     runners[held[x*HS + c]] = runners[held[x*HS + c]] & ~(1 << x);
#endif
     drop_held(x)
  :: c < nheld[x] && (hseq[x*HS + c] > upto || (upto != 255 && harr[x*HS + c])) -> c++
  :: c >= nheld[x] -> break
  od
}

/* code: ManagerLoop::lose and end_step drop a worker's partial results */
inline clear_assemblies(x) {
  c = 0;
  do
  :: c < NS*MAXATT -> got[x*NS*MAXATT + c] = 0; c++
  :: else -> break
  od
}

/* The segment for idle worker j (s2; NONE: nothing). PROTOCOL.md, first lines: "any
   idle worker may run any unfinished segment"; code: EagerScheduler::next_for. */
inline next_for() {
  s2 = NONE;
  k = 0;
  do                                      /* an unstarted segment, lowest index first */
  :: k < NS && attempts[k] == 0 -> s2 = k; break
  :: k < NS && attempts[k] != 0 -> k++
  :: k >= NS -> break
  od;
  if
  :: s2 == NONE ->                        /* else re-run an unfinished segment that j */
     k = 0;                               /* is not running, any of them ... */
     do
     :: k < NS && !done[k] && (runners[k] & (1 << j)) == 0 -> s2 = k; break
     :: k < NS -> k++
     :: k >= NS -> break
     od;
     if
     :: s2 == NONE ->                     /* ... but none only if there is none */
        k = 0;
        do
        :: k < NS ->
           if
           :: !done[k] && (runners[k] & (1 << j)) == 0 -> s2 = k; break
           :: else -> k++
           fi
        :: else -> break
        od
     :: else
     fi
  :: else
  fi
}

/* PROTOCOL.md "Manager, per step": dispatch to every idle worker; "Manager, per worker":
   alive/idle --assign--> alive/running. A send to a full channel fails: the worker is
   suspected, its run abandoned, and dispatch looks again (code: ManagerLoop::dispatch,
   assign, send -> lose). Runs when `need` is set. */
inline dispatch() {
  again = need;
  do
  :: again ->
     again = false;
     j = 0;
     do
     :: j < NW ->
        if
        :: step_open && wstate[j] == ALIVE && parked[j] -> next_for()
        /* a busy worker with room in its queue: an unstarted segment only (code:
           next_ahead_for; no preferred workers in the model) */
        :: step_open && wstate[j] == ALIVE && !parked[j] && NRUN(j) > 0 && NRUN(j) < PIPE ->
           s2 = NONE;
           k = 0;
           do
           :: k < NS && attempts[k] == 0 -> s2 = k; break
           :: k < NS && attempts[k] != 0 -> k++
           :: k >= NS -> break
           od
        :: else -> s2 = NONE
        fi;
        if
        :: s2 != NONE ->
           attempts[s2]++;
           assert(attempts[s2] < MAXATT);
           parked[j] = false;
           if
           :: nfull(asg[j]) ->
              nseq[j]++;
              held[j*HS + nheld[j]] = s2;
              hseq[j*HS + nheld[j]] = nseq[j];
              harr[j*HS + nheld[j]] = false;
              nheld[j]++;
              runners[s2] = runners[s2] | (1 << j);
              asg[j]!s2,attempts[s2],nseq[j]
           :: full(asg[j]) ->           /* the send fails: lose (suspected) */
              wstate[j] = SUSPECTED;
              abandon_held(j, 255);
              clear_assemblies(j);
              again = true
           fi
        :: else
        fi;
        j++
     :: else -> break
     od
  :: else -> break
  od;
  need = false
}

/* PROTOCOL.md "Manager, per step": all segments done --> apply the kept results in
   segment order, return. code: ManagerLoop::finish_step, end_step */
inline finish_step() {
  k = 0;
  do
  :: k < NS ->
     assert(kept[k] == 1 && applied[k] == 0);         /* (a) applied once */
     applied[k]++;
     k++
  :: else -> break
  od;
  step_open = false;
  step_done = true;
  /* end_step: nobody runs anything, partial results are dropped. The model has one
     step, so the rest of the per-step state gets fixed values: nothing reads it any
     more, and runs that differ only there become one state. */
  j = 0;
  do
  :: j < NW ->
     do
     :: nheld[j] > 0 -> nheld[j]--; held[j*HS + nheld[j]] = 0; hseq[j*HS + nheld[j]] = 0;
                        harr[j*HS + nheld[j]] = false
     :: else -> break
     od;
     parked[j] = false; clear_assemblies(j); j++
  :: else -> break
  od;
  k = 0;
  do
  :: k < NS -> attempts[k] = 0; runners[k] = 0; k++
  :: else -> break
  od
}

/* A complete result (w, s, a) of the open step. PROTOCOL.md "Manager, per worker":
   complete result --> alive/idle; "Manager, per step": keep the first result of an
   undone segment, discard one for a done segment. code: ManagerLoop::on_result */
inline on_result() {
  /* the run is over; the worker is idle when it holds nothing else (code: a complete
     result removes its segment) */
  c = 0;
  do
  :: c < nheld[w] && held[w*HS + c] == s -> drop_held(w)
  :: c < nheld[w] && held[w*HS + c] != s -> c++
  :: c >= nheld[w] -> break
  od;
  parked[w] = NRUN(w) == 0;
  if
#ifndef BROKEN_APPLY_TWICE
  :: done[s] ->                                       /* not the first: discard */
     runners[s] = runners[s] & ~(1 << w);
     need = true
#endif
  :: else ->                                          /* the first: keep it */
     assert(part_s[w] != s || part_a[w] != a);        /* (d) not a partial result */
     assert(kept[s] == 0);                            /* (a) kept once */
     kept[s]++;
     if
     :: !done[s] -> done[s] = true; ndone++
     :: else
     fi;
     runners[s] = 0;        /* (code: only w is taken out; nothing reads a done
                               segment's runners) */
     if
     :: ndone == NS -> finish_step()
     :: else -> need = true
     fi
  fi
}

/* The manager's inputs from worker i, one option each: its messages (code:
   ManagerLoop::on_message) and the timer's verdicts on it (code: ManagerLoop::on_tick):
   - a dead worker falls silent: suspected (always possible: the step needs it);
   - a live worker is suspected by mistake (at most MAXFALSE times);
   - a suspected live worker's heartbeat arrives;
   - a suspected dead worker stays silent for CALYPSO_MANAGER_TIMEOUT_MS: gone.
   Once the (only) step is over, request_work, result chunks and leave would change
   nothing the model looks at (code: a late result is discarded, a request parks the
   worker until the next step): they stay in their channels, which keeps the state
   space small. Page requests are still answered (stale). */
#define INPUTS(i) \
  :: step_open && req[i]?[_] -> req[i]?consumed; w = i; kind = K_REQUEST \
  :: preq[i]?_ -> w = i; kind = K_PAGES \
  :: step_open && res[i]?[_,_,_] -> res[i]?s,a,part; w = i; kind = K_CHUNK \
  :: step_open && lv[i]?[_] -> lv[i]?_; w = i; kind = K_LEAVE \
  :: step_open && wstate[i] == ALIVE && !walive[i] -> w = i; kind = K_SUSPECT \
  :: step_open && wstate[i] == ALIVE && walive[i] && nfalse < MAXFALSE -> \
     nfalse++; w = i; kind = K_SUSPECT \
  :: step_open && wstate[i] == SUSPECTED && walive[i] -> w = i; kind = K_BEAT \
  :: step_open && wstate[i] == SUSPECTED && !walive[i] -> wstate[i] = GONE; kind = K_NONE

/* ---- the manager: PROTOCOL.md "Manager, per worker" and "Manager, per step" --------- */
/* One loop turn handles one event, atomically: the loop is the only thread that
   changes scheduling state (PROTOCOL.md, after "Manager, per worker"). */
proctype Manager() {
  byte w, s, a, part, kind, lost, j, k, s2, c, c2, consumed;
  bool again, need;
  do
  :: atomic {
       if
       INPUTS(0)
       INPUTS(1)
#if NW > 2
       INPUTS(2)
#endif
       :: step_done -> kind = K_SHUTDOWN
       fi;
       /* "alive or suspected --leave--> gone (ignored from then on)"; "suspected --any
          message--> alive (keeps its pending request)" */
       if
       :: kind == K_REQUEST || kind == K_PAGES || kind == K_CHUNK || kind == K_LEAVE ||
          kind == K_BEAT ->
          if
          :: wstate[w] == GONE -> kind = K_NONE
          :: wstate[w] == SUSPECTED && step_open -> wstate[w] = ALIVE; need = parked[w]
          :: else
          fi
       :: else
       fi;
       dispatch();            /* code: a parked worker that is back gets work at once,
                                 before its message is handled */
       lost = 0;
       if
       /* request_work(consumed): the assignments up to seq `consumed` were run or
          dropped; those without a result are abandoned. Idle if it holds nothing else.
          code: on_request_work */
       :: kind == K_REQUEST ->
          abandon_held(w, consumed);
          parked[w] = NRUN(w) == 0;
          need = true
       /* page_request: page_data ok while the step is open, stale once it is over.
          code: on_page_request */
       :: kind == K_PAGES ->
          if
          :: !step_open -> pdata[w]!true
          :: step_open && nfull(pdata[w]) -> pdata[w]!false
          :: step_open && full(pdata[w]) -> lost = 1       /* the send fails */
          fi
       /* result_chunk: reassembled by (segment, attempt); complete, it is a result.
          code: on_result_chunk */
       :: kind == K_CHUNK ->
          c = (w*NS + s)*MAXATT + a;
          got[c] = got[c] | part;
#ifdef BROKEN_PARTIAL
          if
          :: true ->
#else
          if
          :: got[c] == 3 ->
#endif
             got[c] = 0;
             on_result()
          :: else ->
             /* the first chunk: its worker has run the segment; the next one it holds
                starts, and it takes no pipeline slot any more (code: ran; only with
                PIPE > 1: with one assignment at a time the next waits for the result) */
             if
             :: PIPE > 1 && !done[s] ->
                c = 0;
                do
                :: c < nheld[w] && held[w*HS + c] == s && !harr[w*HS + c] ->
                   harr[w*HS + c] = true;
                   parked[w] = NRUN(w) == 0;
                   need = true;
                   break
                :: c < nheld[w] && (held[w*HS + c] != s || harr[w*HS + c]) -> c++
                :: c >= nheld[w] -> break
                od
             :: else
             fi
          fi
       :: kind == K_LEAVE -> lost = 2
       :: kind == K_SUSPECT -> lost = 1
       /* the job ends after the step: shutdown to every worker not gone.
          code: take_commands */
       :: kind == K_SHUTDOWN ->
          j = 0;
          do
          :: j < NW ->
             if
             :: wstate[j] != GONE -> shut[j]!1
             :: else
             fi;
             j++
          :: else -> break
          od;
          break
       :: else
       fi;
       /* "alive --silent, or send fails--> suspected (segment abandoned)";
          "--leave--> gone". code: ManagerLoop::lose */
       if
       :: lost != 0 && (wstate[w] == GONE || (wstate[w] == SUSPECTED && lost == 1)) ->
          skip                                          /* already handled */
       :: lost != 0 && wstate[w] != GONE && (wstate[w] != SUSPECTED || lost == 2) ->
          if
          :: lost == 1 -> wstate[w] = SUSPECTED         /* keeps its pending request */
          :: lost == 2 -> wstate[w] = GONE; parked[w] = false
          fi;
          clear_assemblies(w);
          abandon_held(w, 255);
          need = true
       :: else
       fi;
       dispatch()
     }
  od;
  /* (a) every segment applied exactly once */
  k = 0;
  do
  :: k < NS -> assert(applied[k] == 1); k++
  :: else -> break
  od
}

/* ---- a worker: PROTOCOL.md "Worker" ----------------------------------------------- */
/* A crash stops the process (what it sent may still arrive; an assign on its way is
   lost with it). A leave (SIGTERM) sends leave on the heartbeat endpoint first; while
   an assign is on its way, that is a leave while running. */
#define CRASH atomic { departures < MAXDEPART -> departures++; walive[me] = false; goto stop }
#define LEAVE atomic { departures < MAXDEPART -> departures++; walive[me] = false; lv[me]!1; \
                       goto stop }
/* nothing on its way from worker x's main endpoint or to it (no page_data is ever on
   its way to an idle worker) */
#define QUIET(x) (empty(asg[x]) && empty(req[x]) && empty(res[x]))
/* a request the manager would not just ignore: the step is open, and the manager does
   not already have the worker idle and waiting */
#define USEFUL(x) (step_open && !(parked[x] && NRUN(x) == 0))

proctype Worker(byte me) {
  byte seg, att, sq, taken;
  bool stale, asked;

  req[me]!0;                              /* joined: [idle] --request_work--> [asked] */
  do                                      /* [asked]: waits for assign */
  :: atomic { asg[me]?seg,att,sq ->       /* [asked] --assign--> [running]; the segment */
              asked = false;              /* page-faults: page_request */
              taken = sq;                 /* (channels are FIFO: seq order holds) */
              preq[me]!1 };
     /* [running]: waits for the matching page_data; an assign waits in its channel
        (code: WorkerLoop::fetch defers it until the segment is over) */
     do
     :: atomic { pdata[me]?stale ->
          if
          :: stale ->                     /* page_data(stale): give up, request_work */
             if
             :: req[me]!taken
             :: asg[me]?[_,_,_] -> skip   /* code: a queued assign stands for it */
             fi
          :: else ->                      /* the segment ends: its result in 2 chunks */
             res[me]!seg,att,1;           /* (a complete result counts as a request) */
             res[me]!seg,att,2
          fi };
        break
     :: atomic { departures < MAXDEPART && pdata[me]?[false] ->
          pdata[me]?stale;                /* dies half-way through sending its result */
          res[me]!seg,att,1;
          part_s[me] = seg; part_a[me] = att;
          departures++; walive[me] = false;
          goto stop }
     :: shut[me]?_ -> goto stop
     od
  :: shut[me]?_ -> goto stop              /* any state --shutdown--> exit 0 */
#ifndef BROKEN_NO_REREQUEST
  /* code (WorkerLoop::run): nothing received for 5 s: request_work again. Once per
     wait when nothing from or to this worker is on its way (5 s is taken to be long
     enough for a message to arrive), and at most MAXOVERTAKE times in all while its
     result is (the request then overtakes the result). Without that bound a request and
     a re-run of the same segment could chase each other forever. Requests the manager
     would ignore are left out (USEFUL). */
  :: atomic { !asked && QUIET(me) && USEFUL(me) -> asked = true; req[me]!taken }
  :: atomic { !asked && overtakes < MAXOVERTAKE && USEFUL(me) && res[me]?[_,_,_] ->
              overtakes++; asked = true; req[me]!taken }
#endif
  :: CRASH
  :: LEAVE
  od;
stop:
  skip
}

init {
  byte i;
  atomic {
    i = 0;
    do
    :: i < NW -> part_s[i] = NONE; part_a[i] = NONE; walive[i] = true; i++
    :: else -> break
    od;
    run Manager();
    i = 0;
    do
    :: i < NW -> run Worker(i); i++
    :: else -> break
    od
  }
}
