// The single decoder and the encoder of the manager-worker protocol.
#include "sched/protocol.hpp"

#include <cassert>

namespace calypso::sched {

const char* to_string(MsgType t) noexcept {
  switch (t) {
    case MsgType::hello: return "hello";
    case MsgType::welcome: return "welcome";
    case MsgType::refuse: return "refuse";
    case MsgType::request_work: return "request_work";
    case MsgType::assign: return "assign";
    case MsgType::page_request: return "page_request";
    case MsgType::page_data: return "page_data";
    case MsgType::result_chunk: return "result_chunk";
    case MsgType::heartbeat: return "heartbeat";
    case MsgType::leave: return "leave";
    case MsgType::shutdown: return "shutdown";
    case MsgType::read_set: return "read_set";
    case MsgType::bundle: return "bundle";
    case MsgType::prepare: return "prepare";
    case MsgType::prepared: return "prepared";
  }
  return "unknown";
}

std::optional<Message> decode(std::span<const std::byte> bytes, std::string& why) {
  Message m{};
  if (bytes.size() < sizeof(Header)) {
    why = "message shorter than a header (" + std::to_string(bytes.size()) + " bytes)";
    return std::nullopt;
  }
  std::memcpy(&m.header, bytes.data(), sizeof(Header));
  if (m.header.magic != kMagic) {
    why = "bad magic: not a Calypso-DSM message";
    return std::nullopt;
  }
  if (m.header.version != kVersion) {
    why = "protocol version " + std::to_string(m.header.version) + ", expected " +
          std::to_string(kVersion);
    return std::nullopt;
  }
  if (m.header.type < 1 || m.header.type > static_cast<std::uint16_t>(MsgType::max_type)) {
    why = "unknown message type " + std::to_string(m.header.type);
    return std::nullopt;
  }
  if (m.header.body_bytes != bytes.size() - sizeof(Header)) {
    why = "body length " + std::to_string(m.header.body_bytes) + " does not match the " +
          std::to_string(bytes.size() - sizeof(Header)) + " bytes received";
    return std::nullopt;
  }
  m.body = bytes.subspan(sizeof(Header));
  return m;
}

std::optional<HelloView> parse_hello(const Message& m, std::string& why) {
  auto fixed = fixed_part<Hello>(m, why);
  if (!fixed) return std::nullopt;
  auto rest = tail<Hello>(m);
  if (std::uint64_t{fixed->identity_bytes} + fixed->address_bytes + fixed->heartbeat_address_bytes !=
          rest.size() ||
      fixed->address_bytes == 0 || fixed->heartbeat_address_bytes == 0 || fixed->identity_bytes > 4096) {
    why = "hello: identity and address lengths do not match the body";
    return std::nullopt;
  }
  HelloView v{*fixed, {}, {}, {}};
  v.fixed.host[sizeof v.fixed.host - 1] = '\0';
  v.identity.assign(reinterpret_cast<const char*>(rest.data()), fixed->identity_bytes);
  v.address = rest.subspan(fixed->identity_bytes, fixed->address_bytes);
  v.heartbeat_address = rest.subspan(fixed->identity_bytes + fixed->address_bytes);
  return v;
}

std::optional<AssignView> parse_assign(const Message& m, std::string& why) {
  auto fixed = fixed_part<Assign>(m, why);
  if (!fixed) return std::nullopt;
  auto rest = tail<Assign>(m);
  const std::uint64_t words = std::uint64_t{fixed->notices} + fixed->own_segments + fixed->own_pages +
                              fixed->pushed + 2 * std::uint64_t{fixed->frozen_runs};
  if (std::uint64_t{fixed->args_bytes} + words * 4 + fixed->pushed_bytes != rest.size() ||
      fixed->count == 0 || fixed->index >= fixed->count || (fixed->pushed == 0) != (fixed->pushed_bytes == 0) ||
      (fixed->pushed != 0 && fixed->pushed_bytes % fixed->pushed != 0)) {
    why = "assign: malformed (lengths or segment index)";
    return std::nullopt;
  }
  AssignView v{*fixed, rest.first(fixed->args_bytes), {}, {}, {}, {}, {}, {}};
  const std::byte* at = rest.data() + fixed->args_bytes;
  for (auto [out, n] : {std::pair{&v.notices, fixed->notices}, std::pair{&v.own_segments, fixed->own_segments},
                        std::pair{&v.own_pages, fixed->own_pages}, std::pair{&v.pushed, fixed->pushed},
                        std::pair{&v.frozen, 2 * fixed->frozen_runs}}) {
    out->resize(n);
    std::memcpy(out->data(), at, std::size_t{n} * 4);
    at += std::size_t{n} * 4;
  }
  v.pushed_data = std::span(at, fixed->pushed_bytes);
  return v;
}

std::optional<std::vector<std::uint32_t>> parse_read_set(const Message& m, StepId& step, std::string& why) {
  auto fixed = fixed_part<ReadSet>(m, why);
  if (!fixed) return std::nullopt;
  auto rest = tail<ReadSet>(m);
  if (std::uint64_t{fixed->pages} * 4 != rest.size()) {
    why = "read_set: page count does not match the body";
    return std::nullopt;
  }
  std::vector<std::uint32_t> pages(fixed->pages);
  std::memcpy(pages.data(), rest.data(), rest.size());
  step = fixed->step;
  return pages;
}

std::optional<std::vector<std::span<const std::byte>>> parse_bundle(const Message& m, std::string& why) {
  std::vector<std::span<const std::byte>> out;
  std::span<const std::byte> rest = m.body;
  while (!rest.empty()) {
    std::uint32_t frame[2];
    if (rest.size() < sizeof frame) {
      why = "bundle: truncated entry";
      return std::nullopt;
    }
    std::memcpy(frame, rest.data(), sizeof frame);
    const std::size_t padded = (std::size_t{frame[0]} + 7) / 8 * 8;
    if (frame[1] != 0) {
      why = "bundle: reserved bits set";
      return std::nullopt;
    }
    if (padded > rest.size() - sizeof frame) {
      why = "bundle: entry length past the end";
      return std::nullopt;
    }
    const auto inner = rest.subspan(sizeof frame, frame[0]);
    for (std::byte b : rest.subspan(sizeof frame + frame[0], padded - frame[0])) {
      if (b != std::byte{0}) {
        why = "bundle: padding not zero";
        return std::nullopt;
      }
    }
    auto d = decode(inner, why);
    if (!d) {
      why = "bundle: entry " + std::to_string(out.size()) + ": " + why;
      return std::nullopt;
    }
    const MsgType t = d->type();
    if (t == MsgType::bundle || t == MsgType::hello || t == MsgType::welcome || t == MsgType::refuse) {
      why = std::string("bundle: holds a ") + to_string(t);
      return std::nullopt;
    }
    if (d->header.worker != m.header.worker) {
      why = "bundle: an entry names another worker";
      return std::nullopt;
    }
    if (out.size() == Bundler::kMaxMessages) {
      why = "bundle: more than " + std::to_string(Bundler::kMaxMessages) + " messages";
      return std::nullopt;
    }
    out.push_back(inner);
    rest = rest.subspan(sizeof frame + padded);
  }
  if (out.empty()) {
    why = "bundle: empty";
    return std::nullopt;
  }
  return out;
}

void Bundler::add(std::span<const std::byte> message) {
  assert(message.size() <= UINT32_MAX);   // messages are at most max_message (1 MiB)
  const std::uint32_t frame[2] = {static_cast<std::uint32_t>(message.size()), 0};
  const std::size_t padded = (message.size() + 7) / 8 * 8;
  bundle_.append(frame, sizeof frame);
  if (count_++ == 0) first_size_ = message.size();
  bundle_.append(message);
  static constexpr std::byte kZeros[8]{};
  bundle_.append(kZeros, padded - message.size());
  size_ += sizeof frame + padded;
}

std::size_t Bundler::bytes() const noexcept { return count_ == 1 ? first_size_ : size_; }

std::span<const std::byte> Bundler::finish() {
  const std::span<const std::byte> all = bundle_.bytes();
  return count_ == 1 ? all.subspan(kFirstAt, first_size_) : all;
}

void Bundler::clear() {
  bundle_.clear();
  count_ = 0;
  size_ = sizeof(Header);
}

Encoder& Encoder::append(const void* p, std::size_t n) {
  const auto* b = static_cast<const std::byte*>(p);
  buf_.insert(buf_.end(), b, b + n);
  return *this;
}

std::span<const std::byte> Encoder::bytes_with_tail(std::size_t extra_tail) {
  Header h{kMagic, kVersion, static_cast<std::uint16_t>(type_), worker_,
           static_cast<std::uint32_t>(buf_.size() - sizeof(Header) + extra_tail)};
  std::memcpy(buf_.data(), &h, sizeof h);
  return buf_;
}

}  // namespace calypso::sched
