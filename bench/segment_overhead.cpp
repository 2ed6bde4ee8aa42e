// What a segment costs beyond its own work: steps of many short segments, each spinning
// for a given time and writing one word (eight segments share a 64-byte line, so pages
// have many writers), timed by the manager. `./scripts/bench segments` runs it with
// bunching on and off (CALYPSO_BUNDLE) and reports the difference.
//
//   calypso-run -n 2 ./segment_overhead [segments] [work_us] [steps]
//
// Prints, after checking every word:
//   segment_overhead: S segments of W us, 2 workers: T s per step (median of K steps),
//   O us per segment beyond its work, R results bundled
// where O = (T - S * W / workers) / S: the step's time beyond its share of the work,
// per segment.
#include <calypso/calypso.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

struct Work {
  long* out;
  std::uint32_t work_us;
  long step;
};

void spin_and_write(const calypso::Segment& seg, const Work& w) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(w.work_us);
  while (std::chrono::steady_clock::now() < until) {
  }
  w.out[seg.index] = w.step * 1000003L + seg.index;
}
CALYPSO_ROUTINE(spin_and_write);

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) try {
  const auto segments = static_cast<std::uint32_t>(argc > 1 ? std::atoi(argv[1]) : 4096);
  const auto work_us = static_cast<std::uint32_t>(argc > 2 ? std::atoi(argv[2]) : 0);
  const int steps = argc > 3 ? std::atoi(argv[3]) : 5;
  if (segments == 0 || steps <= 0) {   // before the Runtime: a joined worker belongs to rt.run()
    std::fprintf(stderr, "segment_overhead: need segments >= 1 and steps >= 1\n");
    return 2;
  }
  calypso::Runtime rt(argc, argv);
  return rt.run([&](calypso::Manager& m) {
    long* out = m.alloc<long>(segments);
    const std::size_t workers = m.wait_for_workers();
    std::vector<double> times;
    for (long s = 0; s < steps; ++s) {
      const double t0 = now();
      m.parallel(spin_and_write, segments, Work{out, work_us, s});
      times.push_back(now() - t0);
      for (std::uint32_t i = 0; i < segments; ++i) {
        if (out[i] != s * 1000003L + i) {
          std::printf("segment_overhead: MISMATCH at word %u of step %ld\n", i, s);
          return 1;
        }
      }
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    const double share = segments * (work_us * 1e-6) / static_cast<double>(std::max<std::size_t>(workers, 1));
    std::printf("segment_overhead: %u segments of %u us, %zu workers: %.4f s per step (median of %d steps), "
                "%.2f us per segment beyond its work, %llu results bundled\n",
                segments, work_us, workers, median, steps, (median - share) / segments * 1e6,
                static_cast<unsigned long long>(m.stats().bundled_results));
    return 0;
  });
} catch (const calypso::Error& e) {
  std::fprintf(stderr, "segment_overhead: %s\n", e.what());
  return 2;
}
