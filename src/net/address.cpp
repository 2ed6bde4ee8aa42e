// Printable form of an endpoint's provider address.
//
// Addresses travel between processes as text (command lines, pipes, environment), so
// they are written as lowercase hex and parsed back strictly: a malformed address is a
// configuration mistake that must be reported, not silently truncated.
#include "net/endpoint.hpp"

namespace calypso::net {

namespace {

constexpr char kDigits[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string Address::to_string() const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    const auto v = std::to_integer<unsigned>(b);
    out.push_back(kDigits[v >> 4]);
    out.push_back(kDigits[v & 0xf]);
  }
  return out;
}

Address Address::from_string(const std::string& hex) {
  if (hex.empty()) throw Error("net address: empty string");
  if (hex.size() % 2 != 0) {
    throw Error("net address: odd number of hex digits (" + std::to_string(hex.size()) +
                ") in \"" + hex + "\"");
  }
  Address a;
  a.bytes.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_value(hex[i]);
    const int lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      throw Error("net address: non-hex character at offset " +
                  std::to_string(hi < 0 ? i : i + 1) + " in \"" + hex + "\"");
    }
    a.bytes.push_back(static_cast<std::byte>(hi * 16 + lo));
  }
  return a;
}

std::string Address::shm_queue_name() const {
  std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  text.resize(text.find('\0') == std::string::npos ? text.size() : text.find('\0'));
  const std::string prefix = "fi_shm://";
  if (text.rfind(prefix, 0) != 0) return {};
  std::string name(1, '/');
  name.append(text, prefix.size());   // (not "/" + substr: GCC 12 warns falsely, -Wrestrict)
  return name;
}

}  // namespace calypso::net
