// calypso-info: what this machine offers Calypso-DSM, before a run. Prints the libfabric
// providers that open here, the settings in effect (defaults or CALYPSO_* variables),
// whether the shared region's address range is free, the kernel limit on mappings, and
// the role a process started here by srun or mpirun would take (CALYPSO_RENDEZVOUS).
#include "config.hpp"
#include "dsm/region.hpp"
#include "net/endpoint.hpp"
#include "rank_launch.hpp"

#include <calypso/error.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <rdma/fabric.h>

int main() {
  using namespace calypso;
  try {
    Config c = Config::from_environment();
    std::printf("libfabric:       %u.%u\n", FI_MAJOR(fi_version()), FI_MINOR(fi_version()));
    std::printf("providers:      ");
    for (const auto& p : net::available_providers()) std::printf(" %s", p.c_str());
    std::printf("   (CALYPSO_PROVIDER=%s)\n", c.provider.c_str());
    const std::size_t page = dsm::safe_page_size(c.region_size, c.page_size);
    std::printf("region:          %zu MiB at 0x%llx, page %zu bytes%s\n", c.region_size >> 20,
                static_cast<unsigned long long>(c.region_address), page,
                page > kMaxFetchBytes ? " (too large: a run would refuse this region; raise vm.max_map_count)"
                : page != c.page_size ? " (raised to stay under vm.max_map_count)" : "");
    try {
      dsm::Region r = dsm::Region::map(c.region_address, c.region_size, page, dsm::Access::none);
      std::printf("region address:  free in this process\n");
    } catch (const Error& e) {
      std::printf("region address:  %s\n", e.what());
    }
    std::size_t maps = 0;
    std::ifstream("/proc/sys/vm/max_map_count") >> maps;
    std::printf("vm.max_map_count: %zu\n", maps);
    std::printf("heartbeat %lld ms, suspect after %lld ms, manager timeout %lld ms, max attempts %u\n",
                static_cast<long long>(c.heartbeat.count()), static_cast<long long>(c.suspect_after.count()),
                static_cast<long long>(c.manager_timeout.count()), c.max_attempts);
    // What a program started here by srun or mpirun would be (srun -n 4 calypso-info).
    if (auto r = find_rank_launch([](const char* name) -> const char* {
          const char* v = std::getenv(name);
          return v != nullptr && *v != '\0' ? v : nullptr;
        })) {
      std::printf("rank launch:     rank %u of %u (%s): %s; job address in %s\n", r->rank, r->size, r->launcher.c_str(),
                  r->rank == 0 ? "the manager" : "a worker", r->address_file.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "calypso-info: %s\n", e.what());
    return 1;
  }
}
