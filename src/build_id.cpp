// Finds the main executable's NT_GNU_BUILD_ID note through dl_iterate_phdr (the first
// object it reports is the executable), falling back to hashing /proc/self/exe.
#include "build_id.hpp"

#include "routine_registry.hpp"

#include <cstdio>
#include <cstring>
#include <elf.h>
#include <fstream>
#include <iterator>
#include <link.h>
#include <vector>

namespace calypso {
namespace {

std::string to_hex(const unsigned char* p, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

std::string find_note(const dl_phdr_info* info) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    auto* p = reinterpret_cast<const unsigned char*>(info->dlpi_addr + ph.p_vaddr);
    const unsigned char* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      auto* nh = reinterpret_cast<const ElfW(Nhdr)*>(p);
      const unsigned char* name = p + sizeof(ElfW(Nhdr));
      const unsigned char* desc = name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        return to_hex(desc, nh->n_descsz);
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return {};
}

int first_object(dl_phdr_info* info, std::size_t, void* out) {
  *static_cast<std::string*>(out) = find_note(info);
  return 1;  // only the main executable
}

std::string hash_executable() {
  std::ifstream f("/proc/self/exe", std::ios::binary);
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (std::istreambuf_iterator<char> it(f), end; it != end; ++it) {
    h = (h ^ static_cast<unsigned char>(*it)) * 1099511628211ull;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "fnv-%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace

const std::string& executable_identity() {
  static const std::string id = [] {
    std::string note;
    dl_iterate_phdr(&first_object, &note);
    if (note.empty()) note = hash_executable();
    char fp[24];
    std::snprintf(fp, sizeof fp, "-%016llx",
                  static_cast<unsigned long long>(RoutineRegistry::instance().fingerprint()));
    return note + fp;
  }();
  return id;
}

}  // namespace calypso
