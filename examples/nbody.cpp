// Gravitational n-body simulation, direct summation: every body feels every other, so
// each step reads all positions (which the step before changed everywhere) and writes
// the new positions and velocities of its own block of bodies. Positions and velocities
// are double-buffered, as the sequential code would be. Every `recentre` steps the
// manager, in a sequential step, takes the mean velocity out of all bodies (shared
// memory written between parallel steps). The manager then repeats the whole run
// sequentially in private memory and compares bit for bit.
//
//   calypso-run -n 2 ./nbody [bodies] [steps] [segments] [recentre]
#include "report.hpp"

#include <calypso/calypso.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace {

constexpr double kDt = 1e-3;
constexpr double kSoftening2 = 1e-4;   // keeps close encounters finite

// One buffer of the system: x, y, z of body i at pos[3i..3i+2], its velocity likewise.
struct Bodies {
  double* pos;
  double* vel;
};

}  // namespace

struct StepArgs {
  const double* pos;
  const double* vel;
  const double* mass;
  double* new_pos;
  double* new_vel;
  int n;
};

static void step_bodies(const StepArgs& x, int begin, int end) {
  for (int i = begin; i < end; ++i) {
    const double xi = x.pos[3 * i], yi = x.pos[3 * i + 1], zi = x.pos[3 * i + 2];
    double ax = 0, ay = 0, az = 0;
    for (int j = 0; j < x.n; ++j) {
      const double dx = x.pos[3 * j] - xi, dy = x.pos[3 * j + 1] - yi, dz = x.pos[3 * j + 2] - zi;
      const double r2 = dx * dx + dy * dy + dz * dz + kSoftening2;
      const double s = x.mass[j] / (r2 * std::sqrt(r2));
      ax += dx * s;
      ay += dy * s;
      az += dz * s;
    }
    const double vx = x.vel[3 * i] + kDt * ax, vy = x.vel[3 * i + 1] + kDt * ay, vz = x.vel[3 * i + 2] + kDt * az;
    x.new_vel[3 * i] = vx;
    x.new_vel[3 * i + 1] = vy;
    x.new_vel[3 * i + 2] = vz;
    x.new_pos[3 * i] = xi + kDt * vx;
    x.new_pos[3 * i + 1] = yi + kDt * vy;
    x.new_pos[3 * i + 2] = zi + kDt * vz;
  }
}

void advance(const calypso::Segment& seg, const StepArgs& x) {
  const int begin = static_cast<int>(static_cast<long>(x.n) * seg.index / seg.count);
  const int end = static_cast<int>(static_cast<long>(x.n) * (seg.index + 1) / seg.count);
  step_bodies(x, begin, end);
}
CALYPSO_ROUTINE(advance);

namespace {

// A reproducible cloud: positions in the unit cube, small random velocities, masses
// summing to about 1.
void init(Bodies b, double* mass, int n) {
  std::uint64_t s = 0x9e3779b97f4a7c15ULL;
  auto next = [&s] {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) / 9007199254740992.0;   // [0, 1)
  };
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) b.pos[3 * i + d] = next();
    for (int d = 0; d < 3; ++d) b.vel[3 * i + d] = 0.01 * (next() - 0.5);
    mass[i] = (0.5 + next()) / n;
  }
}

// The sequential step: subtract the mass-weighted mean velocity, so the cloud does
// not drift.
void recentre(double* vel, const double* mass, int n) {
  double p[3] = {0, 0, 0}, total = 0;
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) p[d] += mass[i] * vel[3 * i + d];
    total += mass[i];
  }
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) vel[3 * i + d] -= p[d] / total;
  }
}

// The whole run in private memory, with the same kernel.
void simulate(Bodies cur, Bodies next, const double* mass, int n, int steps, int every) {
  for (int s = 0; s < steps; ++s) {
    step_bodies(StepArgs{cur.pos, cur.vel, mass, next.pos, next.vel, n}, 0, n);
    std::swap(cur, next);
    if (every > 0 && (s + 1) % every == 0) recentre(cur.vel, mass, n);
  }
}

}  // namespace

// calypso::Error (a bad CALYPSO_* setting, a full region, a failed step): say why and
// exit 2 rather than abort.
int main(int argc, char** argv) try {
  const int n = argc > 1 ? std::atoi(argv[1]) : 8192;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 10;
  const auto segments = static_cast<std::uint32_t>(argc > 3 ? std::atoi(argv[3]) : 64);
  const int every = argc > 4 ? std::atoi(argv[4]) : 5;
  // Before the Runtime: a worker that has joined must be left to rt.run().
  if (n < 1 || steps < 0 || every < 0) {
    std::fprintf(stderr, "usage: nbody [bodies >= 1] [steps >= 0] [segments] [recentre every >= 0 steps]\n");
    return 2;
  }
  calypso::Runtime rt(argc, argv);
  return rt.run([&](calypso::Manager& m) {
    const std::size_t n3 = 3 * static_cast<std::size_t>(n);
    Bodies cur{m.alloc<double>(n3), m.alloc<double>(n3)};
    Bodies next{m.alloc<double>(n3), m.alloc<double>(n3)};
    double* mass = m.alloc<double>(static_cast<std::size_t>(n));
    init(cur, mass, n);
    // The sequential run's memory is set up untimed too, as the workers' is on joining.
    std::vector<double> p0(n3), v0(n3), p1(n3), v1(n3), ref_mass(static_cast<std::size_t>(n));
    init(Bodies{p0.data(), v0.data()}, ref_mass.data(), n);
    m.wait_for_workers();   // time the computation, not the workers' start-up
    double t0 = example::now();
    for (int s = 0; s < steps; ++s) {
      m.parallel(advance, segments, StepArgs{cur.pos, cur.vel, mass, next.pos, next.vel, n});
      std::swap(cur, next);
      if (every > 0 && (s + 1) % every == 0) recentre(cur.vel, mass, n);
    }
    double t1 = example::now();

    simulate(Bodies{p0.data(), v0.data()}, Bodies{p1.data(), v1.data()}, ref_mass.data(), n, steps, every);
    double t2 = example::now();
    const bool even = steps % 2 == 0;   // where the reference's last step landed
    const double* ref_pos = even ? p0.data() : p1.data();
    const double* ref_vel = even ? v0.data() : v1.data();
    bool ok = std::memcmp(ref_pos, cur.pos, n3 * sizeof(double)) == 0 &&
              std::memcmp(ref_vel, cur.vel, n3 * sizeof(double)) == 0;
    return example::report("nbody", ok, t1 - t0, t2 - t1, m);
  });
} catch (const calypso::Error& e) {
  std::fprintf(stderr, "%s: %s\n", "nbody", e.what());
  return 2;
}
