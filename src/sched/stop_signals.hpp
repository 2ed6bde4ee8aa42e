// The manager's view of the signals that stop a job (SIGTERM, SIGINT, SIGHUP): before
// the process dies of one, the manager tells its workers the job is over, so that
// workers on other hosts exit at once instead of waiting CALYPSO_MANAGER_TIMEOUT_MS for
// a manager that is gone (calypso-run stops only the workers of its own host).
//
// Only signals whose action is still the default are taken: a program's own handler,
// or an ignored signal, is left alone. The handler only wakes the manager's loop through
// an eventfd; the loop tells the workers, then puts the default action back and raises
// the signal again, so the process still ends by it (exit status 128 + N to a shell). The
// same signal again while the first is handled ends the process at once: a loop that
// could not get to it must not make the signal ineffective. (Another stop signal then is
// let be: Ctrl-C's SIGINT is followed by calypso-run's SIGTERM within a second, and the
// telling should finish.) Once the loop has stopped (release), the signals are the
// program's again, and one that came meanwhile is acted on.
#pragma once

#include "unique_fd.hpp"

namespace calypso::sched {

class StopSignals {
 public:
  StopSignals();                    // takes the signals still at their default action
  ~StopSignals() { release(); }
  // Gives back those still ours (a handler the program set since stays), and then dies
  // by a signal that came and was not acted on. Idempotent.
  void release();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  int fd() const { return event_.get(); }   // readable once one came; -1 if none taken
  int taken();                              // the signal that came (0: none), clearing fd()
  [[noreturn]] static void die_by(int sig); // the default action back, and the signal again

 private:
  UniqueFd event_;
  int installed_ = 0;   // bit per signal in kSignals that has our handler
};

}  // namespace calypso::sched
