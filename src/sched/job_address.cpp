// Formatting and parsing of the job address; see job_address.hpp.
#include "sched/job_address.hpp"

#include "net/endpoint.hpp"

#include <calypso/error.hpp>

#include <cstdio>
#include <cstdlib>

namespace calypso::sched {

std::string JobAddress::to_string() const {
  char key[24];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(job_key));
  return provider + "/" + endpoint + "/" + key;
}

JobAddress JobAddress::parse(const std::string& text) {
  auto a = text.find('/');
  auto b = a == std::string::npos ? a : text.find('/', a + 1);
  if (b == std::string::npos || a == 0 || b == a + 1 || b + 1 >= text.size()) {
    throw Error("calypso: bad manager address '" + text +
                "': expected PROVIDER/ADDRESS/KEY as printed by the manager");
  }
  JobAddress j;
  j.provider = text.substr(0, a);
  j.endpoint = text.substr(a + 1, b - a - 1);
  std::string key = text.substr(b + 1);
  // All 16 digits, as printed: a key cut short in copying is not the key with zeros.
  if (key.size() != 16 || key.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    throw Error("calypso: bad job key in manager address '" + text + "': expected 16 hex digits, as printed");
  }
  try {
    net::Address::from_string(j.endpoint);
  } catch (const std::exception& e) {
    throw Error("calypso: bad manager address '" + text + "': its middle part is not an address (" + e.what() + ")");
  }
  j.job_key = std::strtoull(key.c_str(), nullptr, 16);
  return j;
}

}  // namespace calypso::sched
