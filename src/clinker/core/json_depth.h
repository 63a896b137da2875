// How deeply a JSON text nests, found by one linear pass without parsing it.
//
// Request bodies are checked with this before they reach the JSON parser: nlohmann::json builds,
// copies and destroys values recursively, so a small body of deeply nested arrays or objects
// (130 KB is 53,000 levels) would otherwise overflow the stack of whichever thread touches it.
// Cinder's own requests nest a few levels (a volume's metadata is three).
#pragma once

#include <cstddef>
#include <string_view>

namespace clinker {

// Cinder's bodies nest at most 4 levels; this leaves room for any well-meant client.
inline constexpr std::size_t kMaxJsonRequestDepth = 32;

// The greatest nesting of `[` / `{` in `text`, counting only brackets outside string literals
// (escapes inside strings are honoured), or `stop_above` + 1 as soon as the nesting passes
// `stop_above` (the rest is not read). Malformed text gets a number too: the parser that runs
// after refuses it. Pure, thread safe, O(length of text), no allocation.
std::size_t JsonNestingDepth(std::string_view text, std::size_t stop_above);

}  // namespace clinker
