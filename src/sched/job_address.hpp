// The string a worker needs to join a job: "<provider>/<endpoint address hex>/<job key hex>".
// The launcher passes it as CALYPSO_MANAGER; the manager prints it for `calypso-run --join`.
#pragma once

#include <cstdint>
#include <string>

namespace calypso::sched {

struct JobAddress {
  std::string provider;
  std::string endpoint;     // hex, as net::Address::to_string
  std::uint64_t job_key = 0;

  std::string to_string() const;
  static JobAddress parse(const std::string& text);   // throws calypso::Error
};

}  // namespace calypso::sched
