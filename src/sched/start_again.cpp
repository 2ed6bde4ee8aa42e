#include "sched/start_again.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iterator>

extern char** environ;

namespace calypso::sched {

std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (std::size_t at = 0; at < all.size();) {
    const std::size_t end = all.find('\0', at);
    args.push_back(all.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return args;
}

namespace {

// Marks every descriptor from 3 on close-on-exec: close_range where the kernel has it
// (5.11), else one by one from /proc/self/fd.
void close_on_exec_from_3() {
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return;
  const int own = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (fd >= 3 && fd != own) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  ::closedir(d);
}

constexpr const char* kVariable = "CALYPSO_STARTED_AGAIN";

}  // namespace

StartReason why_started() {
  static const StartReason why = [] {
    const char* v = std::getenv(kVariable);
    const std::string value = v != nullptr ? v : "";
    ::unsetenv(kVariable);
    if (value == "given-up") return StartReason::given_up;
    if (value == "lost-manager") return StartReason::lost_manager;
    return StartReason::first;
  }();
  return why;
}

std::string start_again(StartReason why) {
  const std::vector<std::string> args = own_arguments();
  if (args.empty()) return "its arguments could not be read from /proc/self/cmdline";
  // The environment as it is, with the reason in place of any earlier one: built here
  // rather than by setenv, which another thread (a routine) may race with.
  const std::string prefix = std::string(kVariable) + "=";
  const std::string reason = prefix + (why == StartReason::given_up ? "given-up" : "lost-manager");
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) envp.push_back(*e);
  }
  if (why != StartReason::first) envp.push_back(const_cast<char*>(reason.c_str()));
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  close_on_exec_from_3();
  // The mask is kept across execve: the worker blocks SIGTERM (it reads it from a
  // signalfd), and a new image that started with it blocked could not be stopped by it
  // before its own Runtime took it again.
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
  ::execve("/proc/self/exe", argv.data(), envp.data());
  return std::string("execve of /proc/self/exe failed: ") + std::strerror(errno);
}

}  // namespace calypso::sched
