// A program whose Shared<> variables take 2 MiB: started with a smaller region
// (CALYPSO_REGION_SIZE=1M), the Runtime must refuse it by name instead of letting the
// variables run past the region's end (Launcher.SharedVariablesLargerThanTheRegionAreRefused).
#include <calypso/calypso.hpp>

#include <array>
#include <cstdio>

calypso::Shared<std::array<char, 2 << 20>> big;

int main(int argc, char** argv) try {
  calypso::Runtime rt(argc, argv);
  return rt.run([](calypso::Manager&) {
    std::printf("big_shared: ran (%c)\n", (*big)[0] == 0 ? '0' : 'x');
    return 0;
  });
} catch (const calypso::Error& e) {
  std::fprintf(stderr, "big_shared: %s\n", e.what());
  return 2;
}
