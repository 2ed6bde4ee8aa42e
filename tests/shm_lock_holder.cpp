// Test support: leaves the queue lock of a job manager's shm endpoint held by a process
// that no longer exists, as a process SIGKILLed inside libfabric 1.17's shm critical
// section does (see src/net/stall_watch.hpp). It takes the lock and exits.
//
//   shm_lock_holder JOB_ADDRESS      (the "shm/<hex>/<key>" of calypso-run --address-file)
//
// The lock is found through libfabric 1.17's struct smr_region as this machine lays it
// out: the owner's pid at byte 4 and a glibc x86-64 pthread_spinlock_t (1 = free) at
// byte 24. Where the queue file does not look like that, it changes nothing and exits 77
// so that the test is skipped rather than wrong.
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

constexpr std::size_t kPidOffset = 4;
constexpr std::size_t kLockOffset = 24;

int fail(const char* why, int code) {
  std::fprintf(stderr, "shm_lock_holder: %s\n", why);
  return code;
}

// "shm/<hex of fi_shm://NAME\0>/<key>" -> NAME
std::string queue_name(const std::string& job) {
  const auto a = job.find('/'), b = job.rfind('/');
  if (job.rfind("shm/", 0) != 0 || a == b) return {};
  const std::string hex = job.substr(a + 1, b - a - 1);
  std::string text;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    const char c = static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    if (c == '\0') break;
    text += c;
  }
  const auto at = text.find("://");
  return at == std::string::npos ? text : text.substr(at + 3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return fail("usage: shm_lock_holder JOB_ADDRESS", 2);
  const std::string name = queue_name(argv[1]);
  const int owner = name.empty() ? 0 : std::atoi(name.c_str());   // NAME is "<pid>:<n>:<m>"
  if (owner <= 0) return fail("not an shm job address", 2);
  const int fd = shm_open(("/" + name).c_str(), O_RDWR, 0);
  if (fd < 0) return fail("cannot open the queue file", 2);
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return fail("cannot map the queue file", 2);
  auto* base = static_cast<unsigned char*>(p);
  std::int32_t pid = 0, lock = 0;
  std::memcpy(&pid, base + kPidOffset, sizeof pid);
  std::memcpy(&lock, base + kLockOffset, sizeof lock);
  if (pid != owner || lock != 1) return fail("not libfabric 1.17's queue layout: nothing done", 77);
  pthread_spin_lock(reinterpret_cast<pthread_spinlock_t*>(base + kLockOffset));
  std::printf("shm_lock_holder: holding the queue lock of %s; exiting\n", name.c_str());
  return 0;
}
