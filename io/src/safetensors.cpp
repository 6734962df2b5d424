// safetensors reading (the format is described in xtgrad/safetensors.hpp; the writer is
// safetensors_write.cpp).
//
// The 8-byte size and the header are checked against the file size before any
// allocation; every entry is checked, then that the tensors tile the buffer exactly;
// only then are the arrays allocated and read, one tensor at a time. One reader
// (read_checkpoint) serves a file and a buffer in memory (fuzz/fuzz_safetensors.cpp).
#include "xtgrad/safetensors.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "safetensors_detail.hpp"

namespace xtgrad {
namespace {

using safetensors_detail::errno_text;
using safetensors_detail::Failer;
using safetensors_detail::json;
using safetensors_detail::kMetadataKey;
namespace fs = std::filesystem;

// A header larger than this is a corrupt or hostile file, not a checkpoint.
constexpr std::uint64_t kMaxHeaderSize = 100'000'000;

// Appends value's compact JSON text to out and stops once out is longer than limit. Never
// dump() a value from the header whole: it may be 100 MB, and dump() recurses once per
// nesting level, so [[[[...]]]] nested 300,000 deep (a 600 KB file) overflowed the stack.
// Here every level adds a character first, so the recursion stops within limit levels.
void append_brief(const json& value, std::string& out, std::size_t limit) {
  const auto dump = [](const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); };
  if (!value.is_structured()) {
    out += dump(value);
    return;
  }
  const bool object = value.is_object();
  out += object ? '{' : '[';
  for (auto it = value.begin(); it != value.end() && out.size() <= limit; ++it) {
    if (it != value.begin()) out += ',';
    if (object) out += dump(json(it.key())) + ':';
    append_brief(*it, out, limit);
  }
  out += object ? '}' : ']';
}

// A JSON value for an error message, cut short: the first 37 characters of its dump()
// and "...", or all of it when it fits in 40.
std::string brief(const json& value) {
  std::string text;
  append_brief(value, text, 40);
  return text.size() <= 40 ? text : text.substr(0, 37) + "...";
}

// u64 little-endian, byte by byte: independent of the machine's byte order.
std::uint64_t decode_u64(const unsigned char (&in)[8]) {
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= std::uint64_t(in[i]) << (8 * i);
  return value;
}

// ==== reading: the header ==============================================================

// What one header entry promises; checked against the buffer before anything is read.
struct Entry {
  std::string name;
  bool is_f64 = false;  // else F32
  Shape shape;
  std::uint64_t begin = 0, end = 0;  // byte range in the data buffer
};

// One past the brace that closes the header's JSON object, or npos when it never closes.
// Strings are skipped, so a brace inside a name is text. We find the end ourselves because
// nlohmann's parser cannot be asked for it, and it takes a NUL byte for the end of its
// input: "{...}\0GARBAGE" parsed as "{...}" while "{...} GARBAGE" was refused.
std::size_t end_of_object(const std::string& text) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character cannot end the string
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && depth > 0 && --depth == 0) {
      return i + 1;
    }
  }
  return std::string::npos;
}

// The spec allows only spaces (0x20) after the JSON object, as padding to the header size.
void check_padding(const Failer& fail, const std::string& text, std::size_t object_end) {
  const std::size_t bad = text.find_first_not_of(' ', object_end);
  if (bad == std::string::npos) return;
  static const char digits[] = "0123456789abcdef";
  const unsigned char byte = static_cast<unsigned char>(text[bad]);
  fail(std::string("byte 0x") + digits[byte >> 4] + digits[byte & 15] + " at offset " + std::to_string(8 + bad) +
       " of the file follows the header's JSON object: only spaces (0x20) may pad the header");
}

// Parses the header, refusing a key that appears twice in one object: nlohmann's parse
// keeps the last one silently, which would hide a tensor. The parser callback sees every
// object open and close and every key; depth 1 is the top level (the tensor names). Only
// the object itself is parsed; check_padding then vets what follows it.
json parse_header(const Failer& fail, const std::string& text) {
  if (text.empty() || text.front() != '{') fail("the header is not a JSON object (it does not start with '{')");
  const std::size_t object_end = std::min(end_of_object(text), text.size());
  std::vector<std::set<std::string>> open_objects;  // the keys seen so far, innermost last
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second)
        fail(depth == 1 && key != kMetadataKey ? "duplicate tensor name '" + key + "' in the header"
                                               : "duplicate key '" + key + "' in the header");
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.begin() + std::ptrdiff_t(object_end), on_event);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    fail(std::string("the header is not valid JSON: ") + e.what());
  }
  check_padding(fail, text, object_end);
  return header;
}

// A JSON number that must be a non-negative integer (a shape entry, an offset).
std::uint64_t as_index(const Failer& fail, const json& value, const std::string& what) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();  // the parser's type for every n >= 0
  if (value.is_number_integer()) fail(what + " is negative: " + brief(value));
  if (value.is_number_float()) fail(what + " is not an integer: " + brief(value));
  fail(what + " is not a number: " + brief(value));
}

// entry[key], which must exist.
const json& field(const Failer& fail, const json& entry, const char* key, const std::string& where) {
  const auto it = entry.find(key);
  if (it == entry.end()) fail(where + "no \"" + key + "\"");
  return *it;
}

// shape -> (shape, element count); refuses entries that are not indices and products that
// overflow u64 (a hostile [4294967296, 4294967296, 16] would wrap to 0) or, beside a zero,
// xtensor's signed strides.
std::pair<Shape, std::uint64_t> parse_shape(const Failer& fail, const json& shape, const std::string& where) {
  if (!shape.is_array()) fail(where + "\"shape\" is not an array: " + brief(shape));
  Shape dims;
  std::uint64_t numel = 1;  // a 0-d tensor holds one element
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const std::uint64_t d = as_index(fail, shape[i], where + "shape entry " + std::to_string(i));
    if (__builtin_mul_overflow(numel, d, &numel))
      fail(where + "the shape " + brief(shape) + " overflows: its element count exceeds 2^64");
    dims.push_back(std::size_t(d));
  }
  // A tensor with a zero dimension holds nothing, but xtensor still multiplies its other
  // dimensions into signed 64-bit strides: [0, 2^32, 2^32] would overflow them (undefined
  // behaviour). With no zero, the byte count checked against the buffer bounds them.
  if (numel == 0) {
    std::int64_t extent = 1;
    for (const std::size_t d : dims)
      if (d != 0 && __builtin_mul_overflow(extent, d, &extent))
        fail(where + "the shape " + brief(shape) + " overflows: its non-zero dimensions multiply past 2^63");
  }
  return {dims, numel};
}

Entry parse_entry(const Failer& fail, const std::string& name, const json& value, std::uint64_t buffer_size) {
  const std::string where = "tensor '" + name + "': ";
  if (!value.is_object()) fail(where + "the entry is not an object: " + brief(value));
  Entry e;
  e.name = name;

  const json& dtype = field(fail, value, "dtype", where);
  if (!dtype.is_string()) fail(where + "\"dtype\" is not a string: " + brief(dtype));
  const std::string& dtype_text = dtype.get_ref<const std::string&>();
  if (dtype_text != "F32" && dtype_text != "F64")
    fail(where + "unsupported dtype '" + dtype_text + "' (xtgrad reads F32 and F64)");
  e.is_f64 = dtype_text == "F64";
  const std::uint64_t element_size = e.is_f64 ? 8 : 4;

  std::uint64_t numel = 0, nbytes = 0;
  std::tie(e.shape, numel) = parse_shape(fail, field(fail, value, "shape", where), where);
  if (__builtin_mul_overflow(numel, element_size, &nbytes))
    fail(where + "the shape " + shape_str(e.shape) + " overflows: its byte count exceeds 2^64");

  const json& offsets = field(fail, value, "data_offsets", where);
  if (!offsets.is_array() || offsets.size() != 2)
    fail(where + "\"data_offsets\" is not an array [begin, end]: " + brief(offsets));
  e.begin = as_index(fail, offsets[0], where + "data_offsets begin");
  e.end = as_index(fail, offsets[1], where + "data_offsets end");
  const std::string range = "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.end < e.begin) fail(where + range + ": end is before begin");
  if (e.end > buffer_size)
    fail(where + range + " run past the end of the data buffer (" + std::to_string(buffer_size) + " bytes)");
  if (e.end - e.begin != nbytes)
    fail(where + range + " hold " + std::to_string(e.end - e.begin) + " bytes, but dtype " + dtype_text +
         " and shape " + shape_str(e.shape) + " need " + std::to_string(nbytes));
  return e;
}

Metadata parse_metadata(const Failer& fail, const json& value) {
  if (!value.is_object()) fail("__metadata__ is not an object: " + brief(value));
  Metadata metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) fail("__metadata__ value of '" + key + "' is not a string: " + brief(item));
    metadata[key] = item.get<std::string>();
  }
  return metadata;
}

// The spec forbids overlap and holes: sorted by offsets, each tensor starts where the
// previous one ends, and the last one ends at the end of the buffer.
void check_tiling(const Failer& fail, const std::vector<Entry>& entries, std::uint64_t buffer_size) {
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](const Entry* a, const Entry* b) { return std::tie(a->begin, a->end) < std::tie(b->begin, b->end); });
  std::uint64_t covered = 0;  // bytes [0, covered) belong to the tensors seen so far
  const Entry* previous = nullptr;
  for (const Entry* e : order) {
    if (e->begin < covered)
      fail("tensors '" + previous->name + "' and '" + e->name + "' overlap in the data buffer (at byte " +
           std::to_string(e->begin) + ")");
    if (e->begin > covered)
      fail("hole in the data buffer: bytes [" + std::to_string(covered) + ", " + std::to_string(e->begin) +
           ") before tensor '" + e->name + "' belong to no tensor");
    covered = e->end;
    previous = e;
  }
  if (covered != buffer_size)
    fail("hole in the data buffer: bytes [" + std::to_string(covered) + ", " + std::to_string(buffer_size) +
         ") at its end belong to no tensor");
}

// ==== reading: where the bytes come from ===============================================

// A checkpoint on disk, read piece by piece: the tensors are read straight into their
// arrays, so the file's contents are never held in memory twice.
class FileSource {
 public:
  FileSource(const Failer& fail, const std::string& path) : fail_(fail) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) fail("cannot open the file: " + ec.message());
    if (!fs::exists(status)) fail("cannot open the file: it does not exist");
    if (fs::is_directory(status)) fail("cannot open the file: it is a directory");
    in_.open(path, std::ios::binary);
    if (!in_) fail("cannot open the file: " + errno_text(errno));
    in_.seekg(0, std::ios::end);
    const std::streamoff size = in_.tellg();
    if (!in_ || size < 0) fail("cannot determine the file size");
    in_.seekg(0);
    size_ = std::uint64_t(size);
  }
  std::uint64_t size() const { return size_; }
  void read(std::uint64_t offset, void* out, std::uint64_t count) {
    in_.seekg(std::streamoff(offset));
    if (!in_.read(static_cast<char*>(out), std::streamsize(count)))
      fail_("cannot read " + std::to_string(count) + " bytes at offset " + std::to_string(offset) +
            " (was the file truncated while reading?)");
  }

 private:
  const Failer& fail_;
  std::ifstream in_;
  std::uint64_t size_ = 0;
};

// A checkpoint already in memory (load_safetensors_from_memory, the fuzz target).
class MemorySource {
 public:
  MemorySource(const Failer& fail, std::string_view bytes) : fail_(fail), bytes_(bytes) {}
  std::uint64_t size() const { return bytes_.size(); }
  void read(std::uint64_t offset, void* out, std::uint64_t count) {
    // The reader asks only for ranges it has checked against size(); refuse others anyway.
    if (offset > bytes_.size() || count > bytes_.size() - offset)
      fail_("cannot read " + std::to_string(count) + " bytes at offset " + std::to_string(offset) + " of " +
            std::to_string(bytes_.size()));
    if (count > 0) std::memcpy(out, bytes_.data() + offset, count);
  }

 private:
  const Failer& fail_;
  std::string_view bytes_;
};

// Reads one checked tensor, converting F32 <-> F64 where the file and T differ.
template <class T, class Source> Array<T> read_tensor(Source& source, const Entry& e, std::uint64_t buffer_start) {
  Array<T> array = Array<T>::from_shape(e.shape);
  const std::uint64_t nbytes = e.end - e.begin;  // == array.size() * element size: checked
  if (nbytes == 0) return array;
  if (e.is_f64 == std::is_same_v<T, double>) {
    source.read(buffer_start + e.begin, array.data(), nbytes);
    return array;
  }
  std::vector<char> raw(nbytes);
  source.read(buffer_start + e.begin, raw.data(), nbytes);
  const auto convert = [&](auto stored) {  // stored: a float or double, for its type only
    using S = decltype(stored);
    for (std::size_t i = 0; i < array.size(); ++i) {
      std::memcpy(&stored, raw.data() + i * sizeof(S), sizeof(S));
      array.data()[i] = static_cast<T>(stored);  // F64 -> float rounds (out of range: inf)
    }
  };
  if (e.is_f64)
    convert(double{});
  else
    convert(float{});
  return array;
}

// The whole reader, for a file or a buffer in memory: every check happens here.
template <class T, class Source> Safetensors<T> read_checkpoint(const Failer& fail, Source& source) {
  const std::uint64_t size = source.size();

  // 8 bytes: the header size, checked against the file before allocating anything.
  if (size < 8) fail("the file is too short (" + std::to_string(size) + " bytes) to hold the 8-byte header size");
  unsigned char size_bytes[8];
  source.read(0, size_bytes, 8);
  const std::uint64_t header_size = decode_u64(size_bytes);
  if (header_size > kMaxHeaderSize)
    fail("the header size " + std::to_string(header_size) + " is absurd (the limit is " +
         std::to_string(kMaxHeaderSize) + " bytes)");
  if (header_size > size - 8)
    fail("the header size " + std::to_string(header_size) + " is larger than the rest of the file (" +
         std::to_string(size - 8) + " bytes)");
  std::string header_text(header_size, '\0');
  source.read(8, header_text.data(), header_size);

  // The header: every entry checked, then the tiling of the buffer.
  const json header = parse_header(fail, header_text);  // an object: it starts with '{'
  const std::uint64_t buffer_start = 8 + header_size;
  const std::uint64_t buffer_size = size - buffer_start;
  Safetensors<T> result;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey)
      result.metadata = parse_metadata(fail, value);
    else
      entries.push_back(parse_entry(fail, key, value, buffer_size));
  }
  check_tiling(fail, entries, buffer_size);

  // The data: sizes are now bounded by the file's size.
  for (const Entry& e : entries) result.tensors[e.name] = read_tensor<T>(source, e, buffer_start);
  return result;
}

}  // namespace

template <class T> Safetensors<T> load_safetensors(const std::string& path) {
  const Failer fail{"load_safetensors", path};
  FileSource source(fail, path);
  return read_checkpoint<T>(fail, source);
}

template <class T> Safetensors<T> load_safetensors_from_memory(std::string_view bytes, const std::string& name) {
  const Failer fail{"load_safetensors_from_memory", name};
  MemorySource source(fail, bytes);
  return read_checkpoint<T>(fail, source);
}

template Safetensors<float> load_safetensors<float>(const std::string&);
template Safetensors<double> load_safetensors<double>(const std::string&);
template Safetensors<float> load_safetensors_from_memory<float>(std::string_view, const std::string&);
template Safetensors<double> load_safetensors_from_memory<double>(std::string_view, const std::string&);

}  // namespace xtgrad
