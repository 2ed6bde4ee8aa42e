// The manager-worker protocol: message types, their bodies, one encoder and one
// validating decoder. Every byte that arrives from the network goes through decode()
// before anything acts on it; a message that is malformed, from another protocol version,
// or too short for its type is rejected here with a reason.
//
// docs/PROTOCOL.md describes the conversation (which message is legal in which state).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace calypso::sched {

inline constexpr std::uint32_t kMagic = 0x53504c43;   // "CLPS"
inline constexpr std::uint16_t kVersion = 9;

using WorkerId = std::uint32_t;
using StepId = std::uint64_t;
inline constexpr WorkerId kNoWorker = 0;

enum class MsgType : std::uint16_t {
  hello = 1,       // worker -> manager: who I am (identity, job key, my address)
  welcome,         // manager -> worker: your id, the region's geometry
  refuse,          // manager -> worker: you may not join (reason)
  request_work,    // worker -> manager: I am idle (and have run or dropped up to seq N)
  assign,          // manager -> worker: run this segment (with write notices)
  page_request,    // worker -> manager: send pages [first, first+count) of this step
  page_data,       // manager -> worker: the pages, or "stale" if the step is over
  result_chunk,    // worker -> manager: part of a segment's diffs
  heartbeat,       // both ways, between the manager and a worker's heartbeat endpoint
  leave,           // worker -> manager: I am leaving; reassign my segment (body: why, or nothing)
  shutdown,        // manager -> worker: the job is over
  read_set,        // worker -> manager: pages a segment fetched or took from a push
  bundle,          // either way: several of the messages above, to be taken in order
  prepare,         // manager -> worker: the region's part in use is now this much
  prepared,        // worker -> manager: I have allocated it (up to CALYPSO_PREFAULT)
  max_type = prepared,
};
const char* to_string(MsgType t) noexcept;

struct Header {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint16_t type;
  WorkerId worker;          // sender (worker messages) or addressee (manager messages)
  std::uint32_t body_bytes;
};
static_assert(sizeof(Header) == 16);

// A worker's result ring (sched/result_ring.hpp), for a manager on its host: the
// worker's pid, the ring's memfd descriptor, its device and inode, the nonce in its
// header page and its capacity. All zero when the worker has none (CALYPSO_LOCAL_RESULTS=0).
struct RingOffer {
  std::uint32_t pid;
  std::int32_t fd;
  std::uint64_t dev, ino;
  std::uint64_t nonce;
  std::uint64_t capacity;
};
// A worker's local message channel (net/local_channel.hpp), for a manager on its host:
// the descriptors of its memfd and of the two pipes' ends the manager opens, each
// file's device and inode, the nonce and each ring's capacity. All zero when the worker
// has none (CALYPSO_LOCAL_MESSAGES=0).
struct ChannelOffer {
  std::int32_t fd;
  std::int32_t worker_bell_fd;    // the manager writes into it to wake the worker
  std::int32_t manager_bell_fd;   // the manager sleeps on it
  std::uint32_t reserved;
  std::uint64_t dev, ino;
  std::uint64_t worker_bell_dev, worker_bell_ino;
  std::uint64_t manager_bell_dev, manager_bell_ino;
  std::uint64_t nonce;
  std::uint64_t capacity;
};
struct Hello {
  std::uint64_t job_key;
  std::uint32_t pid;
  std::uint32_t identity_bytes;   // executable identity string follows
  std::uint32_t address_bytes;    // then the worker's endpoint address
  std::uint32_t heartbeat_address_bytes;   // then its heartbeat endpoint's address
  char host[64];
  RingOffer results;
  ChannelOffer messages;
};
// What a worker on the manager's host needs to read home memory itself (see
// sched/local_home.hpp): the manager's pid, the descriptors of its region memfd and of
// its control word's memfd, each file's device and inode, and the nonce in the control
// page. All zero when the worker is on another host.
struct LocalOffer {
  std::uint32_t pid;
  std::int32_t region_fd;
  std::int32_t control_fd;
  std::uint32_t reserved;
  std::uint64_t region_dev, region_ino;
  std::uint64_t control_dev, control_ino;
  std::uint64_t nonce;
};
// Welcome::rma bits.
inline constexpr std::uint32_t kRmaReads = 1;           // home and control word are exposed
inline constexpr std::uint32_t kRmaReadsInOrder = 2;    // the manager's endpoint serves a
                                                        // worker's reads in posting order
struct Welcome {
  WorkerId worker;
  std::uint32_t page_size;
  std::uint64_t region_address;
  std::uint64_t region_size;
  std::uint32_t fetch_pages;
  std::uint32_t heartbeat_ms;     // the manager pings this often
  std::uint32_t manager_timeout_ms;   // a worker that hears nothing for this long gives up
  std::uint32_t rma;              // kRma* bits: read pages with RMA from home (see docs/PROTOCOL.md)
  std::uint64_t home_address;     // the manager's exposed home memory (RMA terms)
  std::uint64_t home_key;
  std::uint64_t control_address;  // one word: the open step's id, 0 between steps
  std::uint64_t control_key;
  // Then this many (first, count) u32 pairs: the pages anything has written so far. The
  // others are still zero at the manager, and stay known-zero to the worker until a
  // write notice names them: it clears them itself instead of fetching them.
  std::uint32_t written_runs;
  std::uint32_t local_results;    // 1: the manager took Hello::results; send results there
  // The region's prefix in use when the worker joined: as in a `prepare` (below), which
  // the worker answers with `prepared` before it first asks for work.
  std::uint64_t used_bytes;
  LocalOffer local;
  // 1: the manager took Hello::messages. It sends everything after this welcome through
  // the channel, and takes everything the worker sends after it from there.
  std::uint32_t local_messages;
  std::uint32_t reserved;
};
// Why a worker may not join: an error (another executable, a wrong key), or a job that
// is ending, for which a worker started with it has nothing left to do and exits 0.
enum class RefuseCode : std::uint32_t { error = 0, job_ending = 1 };
struct Refuse {
  std::uint32_t reason_bytes;     // text follows
  RefuseCode code;
};
struct Assign {
  StepId step;
  std::uint32_t segment;          // position of the segment in the step (all routines)
  std::uint32_t attempt;
  std::uint32_t routine;          // RoutineId in the registry
  std::uint32_t index;            // Segment::index
  std::uint32_t count;            // Segment::count
  std::uint32_t args_bytes;       // argument bytes follow
  std::uint32_t notices;          // then this many u32 page numbers
  std::uint32_t invalidate_all;   // 1: drop every cached page before running
  // Pages that only this worker's kept results of step own_step wrote: instead of
  // dropping them, the worker replays its own diffs of own_segments onto them.
  std::uint32_t own_segments;     // then this many u32 segments (positions in own_step)
  std::uint32_t own_pages;        // then this many u32 page numbers
  // Pushed pages: noticed pages that this worker read lately (see ReadSet). Instead of
  // dropping them, it takes their current bytes, which follow: this many u32 page
  // numbers, then pushed_bytes (pushed x page size) of page data, in that order.
  std::uint32_t pushed;
  std::uint32_t pushed_bytes;
  StepId own_step;
  // Per worker, from 1: the worker takes assignments in this order (their notices build
  // on each other; see assign_queue.hpp).
  std::uint64_t seq;
  // Pages frozen (Manager::freeze) since the worker's last assignment: this many
  // (first, count) u32 pairs, after the pushed page numbers and before their data.
  std::uint32_t frozen_runs;
  std::uint32_t reserved;
};
static_assert(sizeof(Assign) == 80, "no padding on the wire");
struct RequestWork {
  std::uint64_t consumed;         // every assignment up to this seq was run or dropped
};
struct PageRequest {
  StepId step;
  std::uint32_t first;
  std::uint32_t count;
};
enum class PageStatus : std::uint32_t { ok = 0, stale = 1, bad_range = 2 };
struct PageData {
  StepId step;
  std::uint32_t first;
  std::uint32_t count;
  PageStatus status;              // ok: count kind bytes then the non-zero pages follow
  std::uint32_t reserved;
};
struct ResultChunk {
  StepId step;
  std::uint32_t segment;
  std::uint32_t attempt;
  std::uint64_t total_bytes;      // size of the whole result body
  std::uint64_t offset;           // where this chunk's bytes go; with kResultInRing, the ring position
  std::uint32_t pages_read;       // pages the attempt read with RMA (stats)
  std::uint32_t flags;            // kResultShortRun, kResultInRing
};
// The segment ran shorter than kShortSegment with bunching on: its worker may hold the
// results of such segments (see the manager's lose()).
inline constexpr std::uint32_t kResultShortRun = 1;
// The whole body is in the worker's result ring at position `offset` (Welcome::local_results);
// the message carries none of it.
inline constexpr std::uint32_t kResultInRing = 2;
// Before a result, when there are any: pages fetched, or read from a pushed copy, since
// the last read_set. The manager pushes them with the next assignment that would drop
// them (Jacobi's boundary rows).
struct ReadSet {
  StepId step;
  std::uint32_t pages;            // then this many u32 page numbers
  std::uint32_t reserved;
};
struct Shutdown {
  std::int32_t code;
  std::uint32_t flags;            // kShutdownGivenUp
};
// Not the job's end: the manager gave this worker up (it was gone too long) and will not
// take it back; it exits. The job goes on.
inline constexpr std::uint32_t kShutdownGivenUp = 1;
// prepare and prepared: the bytes of the region in use from its start (shared variables
// and heap blocks handed out). A worker allocates the memory behind them before it
// answers, so that the program's next steps do not wait for the kernel to allocate it.
struct Prepare {
  std::uint64_t used_bytes;
};
struct Empty {};

// A decoded message: the header and a view of the body (valid as long as the bytes are).
struct Message {
  Header header;
  std::span<const std::byte> body;
  MsgType type() const { return static_cast<MsgType>(header.type); }
};

// Checks magic, version, type and length. On failure returns nullopt and sets why.
std::optional<Message> decode(std::span<const std::byte> bytes, std::string& why);

// Reads the fixed part of a body. Fails (nullopt, why set) if the body is too short
// or, for types with a variable tail, if the tail lengths do not add up.
template <class T>
std::optional<T> fixed_part(const Message& m, std::string& why) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (m.body.size() < sizeof(T)) {
    why = std::string(to_string(m.type())) + " body too short";
    return std::nullopt;
  }
  T out;
  std::memcpy(&out, m.body.data(), sizeof(T));
  return out;
}
template <class T>
std::span<const std::byte> tail(const Message& m) {
  return m.body.subspan(sizeof(T));
}

// Typed, validated views of the variable-length messages.
struct HelloView {
  Hello fixed;
  std::string identity;
  std::span<const std::byte> address;
  std::span<const std::byte> heartbeat_address;
};
std::optional<HelloView> parse_hello(const Message& m, std::string& why);

struct AssignView {
  Assign fixed;
  std::span<const std::byte> args;
  std::vector<std::uint32_t> notices;
  std::vector<std::uint32_t> own_segments;
  std::vector<std::uint32_t> own_pages;
  std::vector<std::uint32_t> pushed;
  std::vector<std::uint32_t> frozen;        // (first, count) pairs
  std::span<const std::byte> pushed_data;   // pushed_bytes; the worker checks the page size
};
std::optional<AssignView> parse_assign(const Message& m, std::string& why);
std::optional<std::vector<std::uint32_t>> parse_read_set(const Message& m, StepId& step, std::string& why);
// A bundle's messages, each a whole message (header included) that decode() accepts,
// from the bundle's sender, none of them a bundle or part of joining (hello, welcome,
// refuse). All or nothing: one bad entry rejects the bundle.
std::optional<std::vector<std::span<const std::byte>>> parse_bundle(const Message& m, std::string& why);

// Builds messages: header + fixed body + any number of tails.
class Encoder {
 public:
  template <class T>
  Encoder(MsgType type, WorkerId worker, const T& fixed) : type_(type), worker_(worker) {
    static_assert(std::is_trivially_copyable_v<T>);
    if constexpr (!std::is_same_v<T, Empty>) append(&fixed, sizeof(T));
  }
  Encoder& append(const void* p, std::size_t n);
  Encoder& append(std::span<const std::byte> s) { return append(s.data(), s.size()); }
  // The finished message (header filled in). The encoder can be reused after clear().
  std::span<const std::byte> bytes() { return bytes_with_tail(0); }
  // The header counts extra_tail bytes that the caller sends as a separate part.
  std::span<const std::byte> bytes_with_tail(std::size_t extra_tail);
  void reserve(std::size_t n) { buf_.reserve(n + sizeof(Header)); }
  void clear() { buf_.resize(sizeof(Header)); }   // keeps the buffer

 private:
  MsgType type_;
  WorkerId worker_;
  std::vector<std::byte> buf_ = std::vector<std::byte>(sizeof(Header));
};

// A segment that runs shorter than this costs less than the messages around it (~20-40
// us per segment on tcp here, mostly the manager's CPU): such segments are bunched.
inline constexpr std::chrono::microseconds kShortSegment{250};
// Most results a worker holds back to send together (the one it runs comes on top).
inline constexpr std::size_t kMaxHeldResults = 16;
// Longest reason a `leave` carries (a worker that joined and cannot go on says why; the
// manager logs it, printable ASCII only).
inline constexpr std::size_t kMaxLeaveReason = 400;

// Several messages for one peer, sent as one: short segments' results go to the manager
// together, and the manager's assignments for them come back together, one send and one
// receive instead of one per segment (the per-message cost dominates such segments).
// Body: per message, u32 length, u32 zero, the message, zero padding to 8 bytes.
class Bundler {
 public:
  explicit Bundler(WorkerId worker) : bundle_(MsgType::bundle, worker, Empty{}) {}
  void add(std::span<const std::byte> message);
  std::size_t messages() const noexcept { return count_; }
  // Bytes of the message finish() would return.
  std::size_t bytes() const noexcept;
  // What to send: the one message alone, or the bundle of all of them.
  std::span<const std::byte> finish();
  void clear();

  static constexpr std::size_t kMaxMessages = 256;

 private:
  Encoder bundle_;
  std::size_t count_ = 0;
  static constexpr std::size_t kFirstAt = sizeof(Header) + 8;   // after the header and its frame
  std::size_t first_size_ = 0;   // of the first message
  std::size_t size_ = sizeof(Header);
};

}  // namespace calypso::sched
