#include "sched/start_again.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
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

// A descriptor as it was noted: its number and what it was open on.
struct Noted {
  int fd;
  dev_t dev;
  ino_t ino;
};
std::vector<Noted> g_inherited;   // written once, before the worker's threads start

// The descriptors from 3 on that are open now, and the /proc directory's own.
std::vector<int> open_descriptors() {
  std::vector<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return fds;
  const int own = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (fd >= 3 && fd != own) fds.push_back(fd);
  }
  ::closedir(d);
  return fds;
}

bool inherited(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  for (const Noted& n : g_inherited) {
    if (n.fd == fd && n.dev == st.st_dev && n.ino == st.st_ino) return true;   // not a number used again
  }
  return false;
}

// Every descriptor from 3 on is closed on exec, but those the program inherited.
void close_on_exec_but_inherited() {
  for (int fd : open_descriptors()) {
    if (!inherited(fd)) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
}

constexpr const char* kVariable = "CALYPSO_STARTED_AGAIN";

}  // namespace

void note_inherited_descriptors() {
  g_inherited.clear();
  for (int fd : open_descriptors()) {
    struct stat st {};
    const int flags = ::fcntl(fd, F_GETFD);
    // Those the program keeps from its own start: not close-on-exec.
    if (flags >= 0 && (flags & FD_CLOEXEC) == 0 && ::fstat(fd, &st) == 0) g_inherited.push_back({fd, st.st_dev, st.st_ino});
  }
}

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

std::string start_again(StartReason why, const std::string& manager_address) {
  const std::vector<std::string> args = own_arguments();
  if (args.empty()) return "its arguments could not be read from /proc/self/cmdline";
  // The environment as it is, with the reason in place of any earlier one: built here
  // rather than by setenv, which another thread (a routine) may race with.
  const std::string prefix = std::string(kVariable) + "=", manager = "CALYPSO_MANAGER=";
  const std::string reason = prefix + (why == StartReason::given_up ? "given-up" : "lost-manager");
  const std::string address = manager + manager_address;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0 && std::strncmp(*e, manager.c_str(), manager.size()) != 0) {
      envp.push_back(*e);
    }
  }
  if (why != StartReason::first) envp.push_back(const_cast<char*>(reason.c_str()));
  envp.push_back(const_cast<char*>(address.c_str()));
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  close_on_exec_but_inherited();
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
