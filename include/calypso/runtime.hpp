// The runtime: one per process. In the manager process run() calls the program's
// main function; in a worker process run() serves segments until the job ends. Which
// one this process is, and where the manager is, comes from the launcher (calypso-run)
// through CALYPSO_* environment variables.
#pragma once

#include <calypso/manager.hpp>

#include <functional>
#include <memory>

namespace calypso {

class Runtime {
 public:
  // Reads configuration (CALYPSO_* variables), maps the shared region. Throws
  // calypso::Error with a clear message on bad configuration.
  Runtime(int argc, char** argv);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Manager: runs main(manager) and returns its result after the workers are released;
  // code after run() runs there. Worker: serves segments until the job ends, and then
  // ends the process itself (status 0; non-zero if it failed): run() does not return
  // there, and a worker that calls exit() or returns from main instead fails (status 70).
  int run(const std::function<int(Manager&)>& main);

  bool is_manager() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace calypso
