// A worker the manager gave up (nothing heard from it for CALYPSO_MANAGER_TIMEOUT_MS:
// the host was stopped, swapped out or cut off) is back, and the job still runs: it
// starts again as a new worker, so the host works for the job again instead of leaving
// its capacity unused to the end. "Again" means a new process image in the same process
// (execve of its own executable, same arguments and environment): nothing of the old
// worker's state (pages, twins, results, endpoints, a routine half run) can leak into
// the new one, and calypso-run, which watches the pid, sees the same worker go on.
#pragma once

#include <string>
#include <vector>

namespace calypso::sched {

// The arguments this process was started with (/proc/self/cmdline); empty if they
// cannot be read.
std::vector<std::string> own_arguments();

// Why a worker starts again. After a lost manager (nothing heard for
// CALYPSO_MANAGER_TIMEOUT_MS) it is a last try: a link cut long enough leaves TCP's
// retransmissions backed off for seconds after the link is back, while a new process
// connects at once; a new worker that is not taken (no answer, no connection) then ends
// as a lost manager did (status 3). One that is taken may try again after a later loss.
enum class StartReason { first, given_up, lost_manager };

// Why this process runs: CALYPSO_STARTED_AGAIN, set by start_again for the new image and
// read once (it is taken out of the environment, so that a later start, or a program the
// worker starts, does not see it).
StartReason why_started();

// Notes the descriptors open now (when the worker starts, before it opens any of its
// own), for start_again to keep: what the program inherited (a log descriptor, PMI_FD)
// belongs to the new image as it belonged to this one.
void note_inherited_descriptors();

// Replaces this process with a new run of its executable (/proc/self/exe, which still
// names the running binary if its file was replaced or removed since), told to join the
// job at `manager_address` (CALYPSO_MANAGER): the file the address first came from may
// be gone by now (a rank launch's, removed when its job ended). Every descriptor but 0,
// 1, 2 and those noted as inherited is closed in the new image (the old endpoints'
// sockets must not stay open), and no signal is blocked there. Returns only if it could
// not, with the reason.
std::string start_again(StartReason why, const std::string& manager_address);

}  // namespace calypso::sched
