// Benchmark support: the kinds of change a page gets between its twin and its current
// contents, shared by the diff codec and collation benchmarks.
#pragma once

#include <cstddef>
#include <random>

// masked: every word changes in its low 6 bytes only, as a double whose value moves a
// little (jacobi's rows); such words travel with byte masks.
enum class Change { none, one_word, scattered_10pct, full, masked };

inline const char* change_name(Change c) {
  constexpr const char* kNames[] = {"none", "one_word", "scattered_10pct", "full", "masked"};
  return kNames[static_cast<int>(c)];
}

inline void flip_word(std::byte* page, std::size_t word) {
  for (std::size_t b = 0; b < 8; ++b) page[word * 8 + b] ^= std::byte{0xa5};
}

// Changes a page of page_bytes as c says; one_word picks the word that Change::one_word flips.
inline void change_page(std::byte* page, std::size_t page_bytes, Change c, std::size_t one_word,
                        std::mt19937_64& rng) {
  switch (c) {
    case Change::none: break;
    case Change::one_word: flip_word(page, one_word); break;
    case Change::scattered_10pct:
      for (std::size_t w = 0; w < page_bytes / 8; ++w)
        if (rng() % 10 == 0) flip_word(page, w);
      break;
    case Change::full:
      for (std::size_t w = 0; w < page_bytes / 8; ++w) flip_word(page, w);
      break;
    case Change::masked:
      for (std::size_t w = 0; w < page_bytes / 8; ++w)
        for (std::size_t b = 0; b < 6; ++b) page[w * 8 + b] ^= std::byte{0x5a};
      break;
  }
}
