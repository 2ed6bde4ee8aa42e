// A stand-in for a manager that has just ended its job: it opens a real endpoint, prints
// a job address, takes every message and answers none. Tests join workers to it to see
// that they give up on their own (CALYPSO_MANAGER_TIMEOUT_MS) rather than wait forever.
// Usage: silent_manager PROVIDER ADDRESS_FILE SECONDS
#include "net/endpoint.hpp"
#include "sched/job_address.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: silent_manager PROVIDER ADDRESS_FILE SECONDS\n");
    return 2;
  }
  calypso::net::EndpointConfig cfg;
  cfg.provider = argv[1];
  if (cfg.provider != "shm") cfg.node = "127.0.0.1";
  auto ep = calypso::net::Endpoint::open(cfg);
  calypso::sched::JobAddress job{cfg.provider, ep.local_address().to_string(), 1};
  {
    std::ofstream out(std::string(argv[2]) + ".tmp");
    out << job.to_string() << "\n";
  }
  std::rename((std::string(argv[2]) + ".tmp").c_str(), argv[2]);
  // Bounded: a test that forgets this process still sees it end.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(std::atoi(argv[3]));
  std::size_t taken = 0;
  while (std::chrono::steady_clock::now() < end) {
    ep.wait(std::chrono::milliseconds(200));
    ep.poll([&](const calypso::net::Event& e) { taken += e.kind == calypso::net::Event::Kind::message; });
  }
  std::printf("silent_manager: took %zu message(s), answered none\n", taken);
  return 0;
}
