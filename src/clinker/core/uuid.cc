#include "clinker/core/uuid.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include <sys/random.h>

#include "clinker/core/assert.h"
#include "clinker/core/hex.h"

namespace clinker {
namespace {

// Random bytes from the kernel's CSPRNG (getrandom), taken a buffer at a time per thread so that
// an id costs no system call on the hot path and no lock. A seeded userspace generator
// (mt19937) would make ids predictable from a few hundred observed ones; ids name resources in
// URLs, so they must not be guessable.
class RandomBytes {
 public:
  void Fill(std::uint8_t* out, std::size_t size) {
    while (size > 0) {
      if (used_ == buffer_.size()) {
        Refill();
      }
      const std::size_t take = std::min(size, buffer_.size() - used_);
      std::copy_n(buffer_.begin() + static_cast<std::ptrdiff_t>(used_), take, out);
      // Bytes handed out are not kept: a core dump shows no id not yet made.
      std::fill_n(buffer_.begin() + static_cast<std::ptrdiff_t>(used_), take, 0);
      used_ += take;
      out += take;
      size -= take;
    }
  }

 private:
  void Refill() {
    std::size_t filled = 0;
    while (filled < buffer_.size()) {
      const ssize_t got = getrandom(buffer_.data() + filled, buffer_.size() - filled, 0);
      if (got < 0) {
        // With flags 0 it fails only when interrupted, or (ENOSYS) on a kernel older than 3.17,
        // which Clinker does not support: no ids can be made safely there.
        CLINKER_ASSERT(errno == EINTR, "getrandom failed: no source of random ids");
        continue;
      }
      filled += static_cast<std::size_t>(got);
    }
    used_ = 0;
  }

  std::array<std::uint8_t, 256> buffer_{};
  std::size_t used_ = buffer_.size();
};

}  // namespace

std::string NewUuid() {
  thread_local RandomBytes random;
  std::array<std::uint8_t, 16> bytes{};
  random.Fill(bytes.data(), bytes.size());
  bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0f) | 0x40);  // Version 4.
  bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant.
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      out.push_back('-');
    }
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0x0f]);
  }
  return out;
}

bool IsUuid(std::string_view text) {
  if (text.size() != 36) {
    return false;
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? text[i] != '-' : HexDigitValue(text[i]) < 0) {
      return false;
    }
  }
  return true;
}

}  // namespace clinker
