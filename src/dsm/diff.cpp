// Diff codec: encodes a dirty page against its twin into runs of changed words, checks
// diffs that arrive from the network, and applies them to a home page.
//
// Encoding is on the critical path of every segment end, so it is built to cost about
// one memcmp of the page when little changed. A vectorised OR-of-xors pass marks the
// changed 512-byte spans and gives a changed span one bit per word (span_scan.hpp); runs
// come from bit scans, and only the words of a run pay for byte masks. There is deliberately no
// whole-page memcmp first: the pass answers "unchanged" about as fast as glibc's memcmp
// (1.6x hot on the Intel VM, 0.85-0.9x on the EPYC one), and on a changed page a memcmp would be a second pass (measured with
// one changed word, cold: 0.48 of memcmp throughput with it, 0.8-1.0 without).
// Nothing here allocates or throws.
#include "dsm/diff.hpp"

#include "dsm/byte_masks.hpp"
#include "dsm/span_scan.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

namespace calypso::dsm {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian and read with memcpy");

constexpr std::size_t kWordBytes = 8;
using detail::kSpanWords;   // unit of the scans: 512 bytes, one bit per word
using detail::xor_at;
// Spans whose changed/unchanged bits are worked out in one pass: 32 KiB of page.
constexpr std::size_t kChunkWords = 64 * kSpanWords;
constexpr std::size_t kMaxRunWords = 0xffff;
using detail::kHigh1;
using detail::nonzero_byte_high_bits;
using detail::nonzero_byte_mask;

inline std::uint64_t load_word(const std::byte* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

inline void store_word(std::byte* p, std::uint64_t w) noexcept { std::memcpy(p, &w, sizeof w); }

struct PagePair {
  const std::byte* cur;
  const std::byte* twin;
  std::size_t words;

  const std::byte* cur_word(std::size_t w) const noexcept { return cur + w * kWordBytes; }
  std::uint64_t xor_word(std::size_t w) const noexcept { return xor_at(cur, twin, w); }
};

// Which words of the page changed. One streaming pass per chunk finds the changed spans;
// only those get a bit per word, and runs are then found with bit scans, so a page of
// scattered writes costs per run, not per word.
class ChangedWords {
 public:
  explicit ChangedWords(const PagePair& p) noexcept
      : p_(p), full_spans_end_(p.words / kSpanWords * kSpanWords) {}

  // First changed word at or after w, or the page's word count when there is none.
  std::size_t next_changed(std::size_t w) noexcept {
    while (w < p_.words) {
      if (w % kSpanWords == 0) {
        w = next_changed_span(w);
        if (w >= p_.words) break;
      }
      const std::uint64_t bits = span_bits(w) >> (w % kSpanWords);
      if (bits != 0) return w + static_cast<std::size_t>(std::countr_zero(bits));
      w = w / kSpanWords * kSpanWords + kSpanWords;
    }
    return p_.words;
  }

  // Changed-word bits of the words from w to the end of w's span (bit 0: word w), when
  // w's span is the last one looked at (next_changed just returned w).
  std::uint64_t bits_from_last_span(std::size_t w) const noexcept { return cached_bits_ >> (w % kSpanWords); }

  // First unchanged word at or after w, or limit (at most the word count) if none before.
  std::size_t next_unchanged(std::size_t w, std::size_t limit) noexcept {
    while (w < limit) {
      // Shifting brings in zero bits, which read as "unchanged" only past the span.
      const std::uint64_t unchanged = ~span_bits(w) >> (w % kSpanWords);
      const std::size_t span_left = kSpanWords - w % kSpanWords;
      const std::size_t n = static_cast<std::size_t>(std::countr_zero(unchanged));
      if (n < span_left) return std::min(limit, w + n);
      w += span_left;
    }
    return limit;
  }

 private:
  // First span start at or after w (a span start) with a changed word, else the end
  // of the full spans. Span bits come a chunk (up to 32 KiB of page) at a time.
  std::size_t next_changed_span(std::size_t w) noexcept {
    while (w < full_spans_end_) {
      const std::size_t chunk = load_chunk(w);
      const std::uint64_t bits = chunk_bits_ >> ((w - chunk) / kSpanWords);
      if (bits != 0) return w + static_cast<std::size_t>(std::countr_zero(bits)) * kSpanWords;
      w = chunk + kChunkWords;
    }
    return full_spans_end_;
  }

  // Scans the chunk holding word w (of the full spans) unless it is the current one;
  // returns its first word.
  std::size_t load_chunk(std::size_t w) noexcept {
    const std::size_t chunk = w / kChunkWords * kChunkWords;
    if (chunk != chunk_first_) {
      chunk_first_ = chunk;
      const std::size_t spans = std::min(kChunkWords, full_spans_end_ - chunk) / kSpanWords;
      chunk_bits_ = detail::changed_span_bits(p_.cur, p_.twin, chunk, spans, word_bits_);
    }
    return chunk;
  }

  // Changed-word bits of the span holding word w; the last span looked at is kept.
  std::uint64_t span_bits(std::size_t w) noexcept {
    const std::size_t first = w / kSpanWords * kSpanWords;
    if (first != cached_first_) {
      cached_first_ = first;
      if (first < full_spans_end_) {
        const std::size_t s = (first - load_chunk(first)) / kSpanWords;
        cached_bits_ = (chunk_bits_ >> s & 1) != 0 ? word_bits_[s] : 0;
      } else {
        cached_bits_ = tail_bits(first);
      }
    }
    return cached_bits_;
  }

  // The last, partial span; absent for pages that are a multiple of 512 bytes.
  std::uint64_t tail_bits(std::size_t first) const noexcept {
    std::uint64_t bits = 0;
    for (std::size_t w = first; w < p_.words; ++w)
      bits |= std::uint64_t{p_.xor_word(w) != 0} << (w - first);
    return bits;
  }

  const PagePair& p_;
  std::size_t full_spans_end_;
  std::size_t chunk_first_ = SIZE_MAX;
  std::uint64_t chunk_bits_ = 0;
  std::uint64_t word_bits_[kChunkWords / kSpanWords];   // of the chunk's changed spans
  std::size_t cached_first_ = SIZE_MAX;
  std::uint64_t cached_bits_ = 0;
};

// Emits one run of words [first, end) at out; returns the byte past it. Runs of one
// word, which scattered writes produce, skip the calls made for longer runs.
std::byte* emit_run(const PagePair& p, std::size_t first, std::size_t end,
                    std::byte* out) noexcept {
  const std::size_t count = end - first;
  std::byte* data = out + sizeof(RunHeader);
  std::byte* masks = data + count * kWordBytes;
  bool whole;
  if (count == 1) {
    const std::uint64_t x = p.xor_word(first);
    store_word(data, load_word(p.cur_word(first)));
    whole = nonzero_byte_high_bits(x) == kHigh1;
    if (!whole) store_word(masks, nonzero_byte_mask(x));   // mask byte, then 7 of padding
  } else {
    // Masks are written either way (the same pass copies the data); a run whose bytes
    // all changed drops them: the next run, or nothing, goes where they were.
    whole = copy_with_byte_masks(p.cur_word(first), p.twin + first * kWordBytes, count, data,
                                 masks);
  }
  const RunHeader h{static_cast<std::uint32_t>(first), static_cast<std::uint16_t>(count),
                    whole ? std::uint16_t{0} : kRunMasked};
  std::memcpy(out, &h, sizeof h);
  return whole ? masks : masks + detail::mask_bytes(count);
}

// A span holding several runs of changed words sends its runs from the second on as one
// sparse run: 16 bytes of framing (header and bitmap) instead of 8 per run, and the
// words are gathered by bit scans instead of found run by run. The first run of a span
// always goes plain, so pages with one run per span (a changed word, a row's tail) never
// pay for the choice; from the second run on, a sparse run is chosen when at least two
// runs are left (faster, and no larger than plain runs, unless only some of its words
// need masks: a sparse run masks all of its words or none).
constexpr int kSparseMinRuns = 2;

// Whether bits (from bit 0 on) hold kSparseMinRuns runs or more: clearing the lowest of
// the run starts that many times less one leaves some. (No popcount: the baseline ISA
// has no instruction for it.)
bool sparse_pays(std::uint64_t bits) noexcept {
  std::uint64_t starts = bits & ~(bits << 1);   // the first word of each run
  for (int i = 1; i < kSparseMinRuns; ++i) starts &= starts - 1;
  return starts != 0;
}

// Emits a sparse run of the words [first, first + 64) whose bits are set (bit 0 is).
// Its length is at most 23 bytes plus 9 per written word (see diff_max_encoded_size).
[[gnu::noinline]] std::byte* emit_sparse(const PagePair& p, std::size_t first, std::uint64_t bits, std::byte* out) noexcept {
  const std::size_t covered = kSparseRunMaxWords - static_cast<std::size_t>(std::countl_zero(bits));
  const std::size_t count = static_cast<std::size_t>(std::popcount(bits));
  std::byte* data = out + sizeof(RunHeader) + sizeof bits;
  std::byte* masks = data + count * kWordBytes;
  std::uint64_t all_high = kHigh1;   // stays so while every byte of every word changed
  std::size_t i = 0;
  for (std::uint64_t b = bits; b != 0; b &= b - 1, ++i) {
    const std::size_t w = first + static_cast<std::size_t>(std::countr_zero(b));
    const std::uint64_t x = p.xor_word(w);
    store_word(data + i * kWordBytes, load_word(p.cur_word(w)));
    all_high &= nonzero_byte_high_bits(x);
    masks[i] = std::byte{nonzero_byte_mask(x)};
  }
  const bool whole = all_high == kHigh1;
  if (!whole) std::memset(masks + count, 0, detail::mask_bytes(count) - count);
  const RunHeader h{static_cast<std::uint32_t>(first), static_cast<std::uint16_t>(covered),
                    static_cast<std::uint16_t>(kRunSparse | (whole ? 0 : kRunMasked))};
  std::memcpy(out, &h, sizeof h);
  std::memcpy(out + sizeof h, &bits, sizeof bits);
  return whole ? masks : masks + detail::mask_bytes(count);
}

bool masks_valid(const std::byte* masks, std::size_t count) noexcept {
  const std::size_t padded = detail::mask_bytes(count);
  for (std::size_t i = 0; i < count; ++i)
    if (masks[i] == std::byte{0}) return false;
  for (std::size_t i = count; i < padded; ++i)
    if (masks[i] != std::byte{0}) return false;
  return true;
}

// A sparse run's bitmap names exactly the words it covers at its ends, and none past.
bool bitmap_valid(std::uint64_t bits, std::size_t covered) noexcept {
  if (covered == 0 || covered > kSparseRunMaxWords || (bits & 1) == 0) return false;
  return (bits >> (covered - 1)) == 1;
}

// A sparse run's words, one at a time (few per span when a sparse run is chosen), given
// its bitmap and where its data start; returns where the next run starts. It walks the
// run itself rather than through read_run: an unmasked run needs no word count, and
// counting (popcount, a library call in the baseline ISA) made 10%-scattered pages
// 15-30% slower to apply (collation_bench).
const std::byte* apply_sparse(const RunHeader& h, std::uint64_t bits, const std::byte* data, std::byte* dst) noexcept {
  std::uint64_t b = bits;
  if ((h.flags & kRunMasked) == 0) {
    for (; b != 0; b &= b - 1, data += kWordBytes)
      std::memcpy(dst + static_cast<std::size_t>(std::countr_zero(b)) * kWordBytes, data, kWordBytes);
    return data;
  }
  const std::byte* masks = data + static_cast<std::size_t>(std::popcount(bits)) * kWordBytes;
  const std::byte* mask = masks;
  for (; b != 0; b &= b - 1, data += kWordBytes, ++mask) {
    std::byte* d = dst + static_cast<std::size_t>(std::countr_zero(b)) * kWordBytes;
    const std::uint64_t m = detail::expand_byte_mask(std::to_integer<std::uint8_t>(*mask));
    store_word(d, (load_word(d) & ~m) | (load_word(data) & m));
  }
  return masks + detail::mask_bytes(static_cast<std::size_t>(mask - masks));
}

}  // namespace

const char* to_string(DiffStatus s) noexcept {
  switch (s) {
    case DiffStatus::ok: return "ok";
    case DiffStatus::truncated: return "truncated";
    case DiffStatus::out_of_range: return "out_of_range";
    case DiffStatus::bad_order: return "bad_order";
    case DiffStatus::bad_flags: return "bad_flags";
  }
  return "unknown";
}

// A bound on plain runs: every other word changed with at least one byte left alone
// makes each run header + one word + one padded mask word, 24 bytes per two page words,
// and how the page ends adds at most 12 bytes. Sparse runs keep within it too: one comes
// only after a plain run and a gap in the same span and ends at the span's last changed
// word; only the smallest (three words covered, two written, masked: 40 bytes for 36 of
// budget) costs more than 12 per word, and then at least 59 words of its span are
// unchanged and cost nothing. diff_validate accepts plain-run diffs of this size too.
std::size_t diff_max_encoded_size(std::size_t page_bytes) noexcept {
  const std::size_t words = page_bytes / kWordBytes;
  return words == 0 ? 0 : 12 * words + 12;
}

std::size_t diff_encode(const std::byte* current, const std::byte* twin, std::size_t page_bytes,
                        std::byte* out) noexcept {
  const PagePair p{current, twin, page_bytes / kWordBytes};
  ChangedWords changed(p);
  std::byte* o = out;
  std::size_t last_span = SIZE_MAX;   // the span where the last plain run ended
  for (std::size_t w = changed.next_changed(0); w < p.words; w = changed.next_changed(w)) {
    if (w / kSpanWords == last_span) {   // a second run in the span (see kSparseMinRuns)
      if (const std::uint64_t ahead = changed.bits_from_last_span(w); sparse_pays(ahead)) {
        o = emit_sparse(p, w, ahead, o);
        w += kSpanWords - w % kSpanWords;   // the rest of the span is in the sparse run
        continue;
      }
    }
    const std::size_t end = changed.next_unchanged(w, std::min(p.words, w + kMaxRunWords));
    o = emit_run(p, w, end, o);
    last_span = (end - 1) / kSpanWords;
    w = end;
  }
  return static_cast<std::size_t>(o - out);
}

DiffStatus diff_validate(std::span<const std::byte> diff, std::size_t page_bytes) noexcept {
  if (diff.size() % kWordBytes != 0) return DiffStatus::truncated;
  const std::size_t page_words = page_bytes / kWordBytes;
  std::size_t pos = 0;
  std::size_t next_free_word = 0;  // runs must start at or after the previous run's end
  while (pos < diff.size()) {
    const RunHeader h = detail::read_run_header(diff.data() + pos);
    if ((h.flags & ~(kRunMasked | kRunSparse)) != 0) return DiffStatus::bad_flags;
    if (h.word_count == 0) return DiffStatus::bad_order;
    std::size_t left = diff.size() - pos - sizeof(RunHeader);
    std::size_t count = h.word_count;   // words with data
    if ((h.flags & kRunSparse) != 0) {
      if (left < sizeof(std::uint64_t)) return DiffStatus::truncated;
      const std::uint64_t bits = detail::read_u64(diff.data() + pos + sizeof(RunHeader));
      if (!bitmap_valid(bits, h.word_count)) return DiffStatus::bad_flags;
      count = static_cast<std::size_t>(std::popcount(bits));
      left -= sizeof bits;
    }
    const bool masked = (h.flags & kRunMasked) != 0;
    if (count * kWordBytes + (masked ? detail::mask_bytes(count) : 0) > left) return DiffStatus::truncated;
    const std::size_t end_word = std::size_t{h.word_offset} + h.word_count;
    if (end_word > page_words) return DiffStatus::out_of_range;
    if (h.word_offset < next_free_word) return DiffStatus::bad_order;
    const detail::RunView r = detail::read_run(diff.data() + pos);
    if (masked && !masks_valid(r.masks, r.count)) return DiffStatus::bad_flags;
    next_free_word = end_word;
    pos = static_cast<std::size_t>(r.next - diff.data());
  }
  return DiffStatus::ok;
}

// Plain runs are read straight from their headers: scattered pages in the plain format
// are a run per word, and this loop is most of their cost (read_run computes more than
// a plain run needs).
void diff_apply(std::span<const std::byte> diff, std::byte* page) noexcept {
  const std::byte* p = diff.data();
  const std::byte* const end = p + diff.size();
  while (p < end) {
    const RunHeader h = detail::read_run_header(p);
    const std::byte* body = p + sizeof h;
    std::byte* dst = page + std::size_t{h.word_offset} * kWordBytes;
    if ((h.flags & kRunSparse) != 0) {
      p = apply_sparse(h, detail::read_u64(body), body + 8, dst);
      continue;
    }
    const std::size_t bytes = std::size_t{h.word_count} * kWordBytes;
    if ((h.flags & kRunMasked) == 0) {
      std::memcpy(dst, body, bytes);
      p = body + bytes;
    } else {
      apply_byte_masks(dst, body, body + bytes, h.word_count);
      p = body + bytes + detail::mask_bytes(h.word_count);
    }
  }
}

bool diff_apply_bounded(std::span<const std::byte> diff, std::byte* page, std::size_t page_bytes) noexcept {
  const std::byte* p = diff.data();
  const std::byte* const end = p + diff.size();
  const std::size_t page_words = page_bytes / kWordBytes;
  while (p < end) {
    // Every value below is read once into a local and checked before it is used.
    if (static_cast<std::size_t>(end - p) < sizeof(RunHeader)) return false;
    const RunHeader h = detail::read_run_header(p);
    const std::byte* body = p + sizeof h;
    const bool sparse = (h.flags & kRunSparse) != 0;
    if (h.word_count == 0 || h.word_offset > page_words || h.word_count > page_words - h.word_offset) return false;
    const bool masked = (h.flags & kRunMasked) != 0;
    std::byte* dst = page + std::size_t{h.word_offset} * kWordBytes;
    if (sparse) {
      if (h.word_count > kSparseRunMaxWords || static_cast<std::size_t>(end - body) < 8) return false;
      const std::uint64_t bits = detail::read_u64(body);
      if (h.word_count < 64 && (bits >> h.word_count) != 0) return false;   // a word past the run
      body += 8;
      // With room for the largest sparse run, its words need no counting (see apply_sparse).
      constexpr std::size_t kLargest = kSparseRunMaxWords * kWordBytes + kSparseRunMaxWords;
      const auto room = static_cast<std::size_t>(end - body);
      if (room < kLargest) {
        const auto n = static_cast<std::size_t>(std::popcount(bits));
        if (room < n * kWordBytes + (masked ? detail::mask_bytes(n) : 0)) return false;
      }
      p = apply_sparse(h, bits, body, dst);
      continue;
    }
    const std::size_t count = h.word_count;
    const std::size_t need = count * kWordBytes + (masked ? detail::mask_bytes(count) : 0);
    if (static_cast<std::size_t>(end - body) < need) return false;
    if (!masked) {
      std::memcpy(dst, body, count * kWordBytes);
    } else {
      // The vector kernels take mask padding as zero (diff_validate's rule), and their
      // last step of 8 words could then store past the run: they get whole groups only.
      const std::byte* masks = body + count * kWordBytes;
      const std::size_t whole = count / 8 * 8;
      apply_byte_masks(dst, body, masks, whole);
      for (std::size_t i = whole; i < count; ++i) {
        std::byte* d = dst + i * kWordBytes;
        const std::uint64_t m = detail::expand_byte_mask(std::to_integer<std::uint8_t>(masks[i]));
        store_word(d, (load_word(d) & ~m) | (load_word(body + i * kWordBytes) & m));
      }
    }
    p = body + need;
  }
  return true;
}

void diff_swap(std::span<const std::byte> diff, std::byte* a, std::byte* b) noexcept {
  const std::byte* p = diff.data();
  const std::byte* const end = p + diff.size();
  while (p < end) {
    const detail::RunView r = detail::read_run(p);
    const std::size_t at = std::size_t{r.h.word_offset} * kWordBytes;
    detail::for_each_written_word(r, [&](std::size_t word, std::size_t) {
      std::byte* x = a + at + word * kWordBytes;
      std::byte* y = b + at + word * kWordBytes;
      const std::uint64_t vx = load_word(x);
      store_word(x, load_word(y));
      store_word(y, vx);
    });
    p = r.next;
  }
}

}  // namespace calypso::dsm
