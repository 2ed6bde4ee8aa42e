// Tests of the wall between the public API (include/calypso/) and everything else.
//
// This file includes the umbrella header first and nothing internal, so that it only
// compiles if the public headers are self-sufficient; static_asserts pin down the
// properties of the public types that programs rely on (trivially copyable values,
// non-copyable owners). At run time it checks that no public header mentions libfabric
// or includes anything but standard and calypso/ headers, and compiles every public
// header in a translation unit of its own with the system compiler.
#include <calypso/calypso.hpp>

// Including the public API must not drag libfabric in.
#if defined(FABRIC_H) || defined(FI_MAJOR_VERSION) || defined(FI_VERSION)
#error "a public header includes <rdma/fabric.h>"
#endif

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

namespace {

namespace fs = std::filesystem;

static_assert(std::is_trivially_copyable_v<calypso::Segment>);
static_assert(std::is_standard_layout_v<calypso::Segment>);
static_assert(calypso::Segment{}.index == 0 && calypso::Segment{}.count == 1);
static_assert(std::is_base_of_v<std::runtime_error, calypso::Error>);
static_assert(std::is_constructible_v<calypso::Error, std::string>);
static_assert(!std::is_copy_constructible_v<calypso::Runtime>);
static_assert(!std::is_copy_assignable_v<calypso::Runtime>);
static_assert(!std::is_move_constructible_v<calypso::Runtime>);
static_assert(!std::is_default_constructible_v<calypso::Manager>);
static_assert(!std::is_copy_constructible_v<calypso::Shared<int>>);
static_assert(!std::is_copy_assignable_v<calypso::Shared<int>>);
// Tasks travel in an initializer_list, which copies.
static_assert(std::is_copy_constructible_v<calypso::Task>);
static_assert(std::is_trivially_copyable_v<calypso::Stats>);
static_assert(std::is_trivially_copyable_v<calypso::NoArgs> && std::is_empty_v<calypso::NoArgs>);

struct Args {
  double scale;
  int rows;
};
void scale_rows(const calypso::Segment&, const Args&) {}
void no_args(const calypso::Segment&) {}
CALYPSO_ROUTINE(scale_rows);
CALYPSO_ROUTINE(no_args);

TEST(PublicApi, TaskCopiesItsArguments) {
  const Args args{2.5, 7};
  calypso::Task t(scale_rows, 16, args);
  EXPECT_EQ(t.count(), 16u);
  ASSERT_EQ(t.args().size(), sizeof(Args));
  EXPECT_EQ(std::memcmp(t.args().data(), &args, sizeof args), 0);
  EXPECT_EQ(t.function(), reinterpret_cast<calypso::detail::AnyFn>(&scale_rows));
  calypso::Task u(no_args, 3);
  EXPECT_EQ(u.count(), 3u);
  EXPECT_TRUE(u.args().empty());
}

TEST(PublicApi, ErrorCarriesItsMessage) {
  try {
    throw calypso::Error("calypso: the shared heap is full");
  } catch (const std::exception& e) {
    EXPECT_STREQ(e.what(), "calypso: the shared heap is full");
  }
}

// The source tree: CALYPSO_SOURCE_DIR if the build defines it, else found from this
// file's name (Meson passes it relative to the build directory, which is the parent of
// the directory holding this test executable). Empty if neither works.
fs::path source_dir() {
  std::vector<fs::path> candidates;
#ifdef CALYPSO_SOURCE_DIR
  candidates.emplace_back(CALYPSO_SOURCE_DIR);
#endif
  std::error_code ec;
  const fs::path file(__FILE__);
  if (file.is_absolute()) {
    candidates.push_back(file.parent_path().parent_path());
  } else {
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back((exe.parent_path().parent_path() / file).parent_path().parent_path());
  }
  for (const fs::path& c : candidates) {
    if (fs::exists(c / "include" / "calypso" / "calypso.hpp", ec)) return fs::weakly_canonical(c, ec);
  }
  return {};
}

std::vector<fs::path> public_headers(const fs::path& include) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(include)) {
    if (e.is_regular_file() && e.path().extension() == ".hpp") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(PublicApi, NoFabricAnywhereInInclude) {
  const fs::path src = source_dir();
  if (src.empty()) GTEST_SKIP() << "source tree not found (define CALYPSO_SOURCE_DIR)";
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(src / "include")) {
    if (!e.is_regular_file()) continue;
    ++files;
    std::string text = read_all(e.path());
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(text.find("fabric"), std::string::npos) << e.path();
  }
  EXPECT_GE(files, 7);
}

TEST(PublicApi, HeadersIncludeOnlyStandardAndPublicHeaders) {
  const fs::path src = source_dir();
  if (src.empty()) GTEST_SKIP() << "source tree not found (define CALYPSO_SOURCE_DIR)";
  const std::vector<fs::path> headers = public_headers(src / "include");
  ASSERT_GE(headers.size(), 7u);
  for (const fs::path& h : headers) {
    std::istringstream in(read_all(h));
    std::string line;
    while (std::getline(in, line)) {
      const auto at = line.find("#include");
      if (at == std::string::npos) continue;
      const std::string target = line.substr(at + 8);
      const auto open = target.find_first_not_of(" \t");
      ASSERT_NE(open, std::string::npos) << h << ": " << line;
      EXPECT_EQ(target[open], '<') << h << ": internal include: " << line;
      const std::string name = target.substr(open + 1, target.find('>') - open - 1);
      const bool ours = name.rfind("calypso/", 0) == 0;
      const bool standard = name.find('/') == std::string::npos && name.find('.') == std::string::npos;
      EXPECT_TRUE(ours || standard) << h << ": includes <" << name << ">";
    }
  }
}

// Compiles `#include <calypso/X.hpp>` alone, for every public header, in one compiler run
// (each source file is its own translation unit), with the project's warning flags.
TEST(PublicApi, EveryHeaderCompilesOnItsOwn) {
  const fs::path src = source_dir();
  if (src.empty()) GTEST_SKIP() << "source tree not found (define CALYPSO_SOURCE_DIR)";
  const char* cxx_env = std::getenv("CXX");
  const std::string cxx = cxx_env != nullptr && *cxx_env != '\0' ? cxx_env : "c++";
  if (std::system((cxx + " --version >/dev/null 2>&1").c_str()) != 0) GTEST_SKIP() << "no compiler '" << cxx << "'";

  char tmpl[] = "/tmp/calypso-headers-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path dir(tmpl);
  std::string cmd = cxx + " -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror -I'" +
                    (src / "include").string() + "'";
  const std::vector<fs::path> headers = public_headers(src / "include");
  for (const fs::path& h : headers) {
    const fs::path rel = fs::relative(h, src / "include");
    const fs::path tu = dir / (h.stem().string() + "_alone.cpp");
    // Twice: a header must also survive being included again.
    std::ofstream(tu) << "#include <" << rel.string() << ">\n#include <" << rel.string() << ">\n";
    cmd += " '" + tu.string() + "'";
  }
  const fs::path log = dir / "log.txt";
  cmd += " >'" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << read_all(log);
  fs::remove_all(dir);
  EXPECT_GE(headers.size(), 7u);
}

}  // namespace
