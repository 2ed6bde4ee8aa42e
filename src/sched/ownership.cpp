#include "sched/ownership.hpp"

#include <algorithm>
#include <map>

namespace calypso::sched {

namespace {

struct Finish {
  std::chrono::nanoseconds at{};   // when its last kept run completed
  std::uint32_t kept = 0;
};

// Per alive worker with a kept run.
std::map<WorkerId, Finish> finishes(std::span<const KeptRun> runs, std::span<const WorkerId> alive) {
  std::map<WorkerId, Finish> finish;
  for (const KeptRun& r : runs) {
    if (std::find(alive.begin(), alive.end(), r.runner) == alive.end()) continue;
    Finish& f = finish[r.runner];
    f.at = std::max(f.at, r.done_at);
    ++f.kept;
  }
  return finish;
}

}  // namespace

void OwnerPaces::observe(std::span<const KeptRun> runs, std::span<const WorkerId> alive) {
  std::erase_if(seconds_per_segment_,
                [&](const auto& e) { return std::find(alive.begin(), alive.end(), e.first) == alive.end(); });
  for (const auto& [w, f] : finishes(runs, alive)) {
    const double now = std::chrono::duration<double>(f.at).count() / f.kept;
    const auto [it, fresh] = seconds_per_segment_.try_emplace(w, now);
    if (!fresh) it->second += kWeight * (now - it->second);
  }
}

std::optional<double> OwnerPaces::seconds_per_segment(WorkerId w) const {
  const auto it = seconds_per_segment_.find(w);
  if (it == seconds_per_segment_.end()) return std::nullopt;
  return it->second;
}

std::optional<OwnerMove> evening_move(std::span<const KeptRun> runs, std::span<const WorkerId> alive,
                                      const OwnerPaces& paces) {
  const std::map<WorkerId, Finish> finish = finishes(runs, alive);
  if (finish.size() < 2) return std::nullopt;
  const auto by_time = [](const auto& a, const auto& b) { return a.second.at < b.second.at; };
  const auto first = std::min_element(finish.begin(), finish.end(), by_time);
  const auto last = std::max_element(finish.begin(), finish.end(), by_time);
  // Both must say so: a step's finishing times alone swing (a cold run, a busy host),
  // and moving on them moved jacobi's segments to and fro every step. Expected work
  // would not do for the second test: a cold run raises its segment's expectation, and
  // the receiver then looked loaded and gave a segment back.
  if (last->second.kept < first->second.kept + 2) return std::nullopt;
  const auto giver = paces.seconds_per_segment(last->first);
  const auto receiver = paces.seconds_per_segment(first->first);
  if (giver && receiver && *receiver > kEvenPaceSlack * *giver) return std::nullopt;
  const auto gap = last->second.at - first->second.at;
  std::optional<std::uint32_t> pick;
  bool pick_borders = false;
  for (std::uint32_t s = 0; s < runs.size(); ++s) {
    const KeptRun& r = runs[s];
    if (r.runner != last->first || r.expected.count() <= 0) continue;
    if (std::chrono::duration<double>(r.expected) * kEvenGap > gap) continue;
    const bool borders = (s > 0 && runs[s - 1].runner == first->first) ||
                         (s + 1 < runs.size() && runs[s + 1].runner == first->first);
    if (pick_borders && !borders) continue;   // a bordering one stays picked
    pick = s;
    pick_borders = borders;
  }
  if (!pick) return std::nullopt;
  return OwnerMove{*pick, first->first};
}

std::optional<OwnerMove> Evening::after_step(std::span<const KeptRun> runs, std::span<const WorkerId> alive) {
  paces_.observe(runs, alive);
  const std::optional<OwnerMove> move = evening_move(runs, alive, paces_);
  if (!move) {
    streak_ = 0;
    return std::nullopt;
  }
  const WorkerId from = runs[move->segment].runner;
  if (streak_ != 0 && from == from_ && move->to == to_) {
    ++streak_;
  } else {
    from_ = from;
    to_ = move->to;
    streak_ = 1;
  }
  if (streak_ < kSteps) return std::nullopt;
  streak_ = 0;
  return move;
}

}  // namespace calypso::sched
