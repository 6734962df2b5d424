// Safetensors checkpoints: round trips (bit for bit), files from the independent Python
// writer (tests/fixtures/make_safetensors_fixtures.py), every kind of broken file refused
// with a telling message, and atomic saves (no broken file, no temporary left behind).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "xtgrad/safetensors.hpp"

#ifndef XTGRAD_FIXTURE_DIR
#error "XTGRAD_FIXTURE_DIR must name tests/fixtures (see tests/CMakeLists.txt)"
#endif

using namespace xtgrad;
using namespace xtgrad::testing;
namespace fs = std::filesystem;

namespace {

// ---- files and directories ------------------------------------------------------------

std::string u64_le(std::uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((value >> (8 * i)) & 0xff);
  return out;
}

// A file with the given header text and buffer; the size field is the header's length
// unless header_size says otherwise.
void write_raw(const std::string& path, const std::string& header, const std::string& buffer,
               std::uint64_t header_size = std::numeric_limits<std::uint64_t>::max()) {
  std::ofstream out(path, std::ios::binary);
  out << u64_le(header_size == std::numeric_limits<std::uint64_t>::max() ? header.size() : header_size) << header
      << buffer;
  REQUIRE(out.good());
}

std::string fixture(const std::string& name) {
  const std::string path = std::string(XTGRAD_FIXTURE_DIR) + "/safetensors/" + name;
  REQUIRE_MESSAGE(fs::exists(path),
                  path << " is missing (regenerate with tests/fixtures/make_safetensors_fixtures.py)");
  return path;
}

// Asserts that f throws CheckpointError whose message names the file and has every fragment.
template <class F> void check_refused(F&& f, const std::string& path, std::vector<std::string> fragments) {
  fragments.insert(fragments.begin(), path);
  check_throws_with<CheckpointError>(f, fragments);
}

// load_safetensors<float> and <double> both refuse the file.
void check_load_refused(const std::string& path, const std::vector<std::string>& fragments) {
  CAPTURE(path);
  check_refused([&] { load_safetensors<float>(path); }, path, fragments);
  check_refused([&] { load_safetensors<double>(path); }, path, fragments);
}

// ---- values ---------------------------------------------------------------------------

template <class T> Shape shape_of(const Array<T>& a) { return Shape(a.shape().begin(), a.shape().end()); }

// Same shape and the same bits (NaN payloads and -0 included).
template <class T> void check_bitwise_equal(const Array<T>& actual, const Array<T>& expected, const std::string& name) {
  CAPTURE(name);
  REQUIRE(shape_of(actual) == shape_of(expected));
  REQUIRE(actual.size() == expected.size());
  if (expected.size() > 0) CHECK(std::memcmp(actual.data(), expected.data(), expected.size() * sizeof(T)) == 0);
}

// Shape and exact values (== in double; infinities compare too, and the sign of zero).
template <class T> void check_exact(const Array<T>& a, const Shape& shape, const std::vector<double>& expected) {
  REQUIRE(shape_of(a) == shape);
  REQUIRE(a.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i)
    CHECK_MESSAGE((double(a.data()[i]) == expected[i] && std::signbit(a.data()[i]) == std::signbit(expected[i])),
                  "element " << i << ": " << a.data()[i]);
}

// Several tensors: special values, a 0-d scalar, an empty (0,3), a 4-d and a larger one.
template <class T> StateDict<T> sample_state() {
  using L = std::numeric_limits<T>;
  StateDict<T> state;
  state["layer.weight"] = Array<T>{{T(1.5), T(-0.0), L::infinity()}, {-L::infinity(), L::quiet_NaN(), L::denorm_min()}};
  state["bias"] = Array<T>{T(0.1), T(-2), T(1e-7)};
  Array<T> scalar = Array<T>::from_shape(Shape{});
  scalar() = T(3.25);
  state["scale"] = scalar;
  state["empty"] = Array<T>::from_shape(Shape{0, 3});
  state["blocks.0.attn.q_proj.weight"] = iota<T>({2, 1, 2, 2}).data();
  Array<T> big = Array<T>::from_shape(Shape{100, 300});
  for (std::size_t i = 0; i < big.size(); ++i) big.data()[i] = T(std::sin(double(i)) * 1e3);
  state["big"] = big;
  return state;
}

const Metadata kMetadata = {{"epoch", "3"}, {"format", "pt"}, {"note", "\xc3\xbcnicode, \"quotes\" and {braces}"}};

template <class T> void check_round_trip() {
  TempDir dir;
  const std::string path = (dir / "model.safetensors");
  const StateDict<T> state = sample_state<T>();
  save_safetensors(path, state, kMetadata);
  const Safetensors<T> loaded = load_safetensors<T>(path);
  CHECK(loaded.metadata == kMetadata);
  REQUIRE(loaded.tensors.size() == state.size());
  for (const auto& [name, array] : state) {
    REQUIRE_MESSAGE(loaded.tensors.count(name) == 1, name);
    check_bitwise_equal(loaded.tensors.at(name), array, name);
  }
  CHECK(dir.names() == std::vector<std::string>{"model.safetensors"});
}

// The header of a file we wrote, read by the test itself: names in file order sorted,
// offsets contiguous from 0 to the end of the buffer, header padded to 8 bytes.
template <class T> void check_written_layout(const char* dtype) {
  TempDir dir;
  const std::string path = (dir / "model.safetensors");
  save_safetensors(path, sample_state<T>(), kMetadata);
  const std::string bytes = read_file(path);
  REQUIRE(bytes.size() >= 8);
  std::uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= std::uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  REQUIRE(8 + header_size <= bytes.size());
  CHECK((8 + header_size) % 8 == 0);
  const std::string text = bytes.substr(8, header_size);
  const std::size_t last_brace = text.rfind('}');
  REQUIRE(last_brace != std::string::npos);
  CHECK(text.find_first_not_of(' ', last_brace + 1) == std::string::npos);  // padding: spaces

  const auto header = nlohmann::ordered_json::parse(text);  // keeps the file's key order
  const std::uint64_t buffer_size = bytes.size() - 8 - header_size;
  std::vector<std::string> names;
  std::uint64_t expected_begin = 0;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      CHECK(entry == nlohmann::ordered_json(kMetadata));
      continue;
    }
    CAPTURE(name);
    names.push_back(name);
    CHECK(entry.at("dtype") == dtype);
    CHECK(entry.at("data_offsets").at(0).template get<std::uint64_t>() == expected_begin);
    expected_begin = entry.at("data_offsets").at(1).template get<std::uint64_t>();
  }
  CHECK(expected_begin == buffer_size);
  CHECK(names.size() == sample_state<T>().size());
  CHECK(std::is_sorted(names.begin(), names.end()));
}

// While alive: files may grow to `bytes` at most, and exceeding that makes write() fail
// with EFBIG instead of killing the process with SIGXFSZ.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &previous_) == 0);
    rlimit limit = previous_;
    limit.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &previous_);
    std::signal(SIGXFSZ, previous_handler_);
  }

 private:
  rlimit previous_{};
  void (*previous_handler_)(int) = nullptr;
};

StateDict<float> small_state(float value) {
  StateDict<float> state;
  state["w"] = Array<float>{value, value + 1};
  return state;
}

}  // namespace

// ---- round trips ----------------------------------------------------------------------

TEST_CASE("safetensors: float round trip keeps every bit and shape and the metadata") { check_round_trip<float>(); }

TEST_CASE("safetensors: double round trip keeps every bit and shape and the metadata") { check_round_trip<double>(); }

TEST_CASE("safetensors: the written header has sorted names and contiguous offsets from 0") {
  SUBCASE("F32") { check_written_layout<float>("F32"); }
  SUBCASE("F64") { check_written_layout<double>("F64"); }
}

TEST_CASE("safetensors: an empty state dict round trips with and without metadata") {
  TempDir dir;
  const std::string path = (dir / "empty.safetensors");
  save_safetensors(path, StateDict<double>{});
  Safetensors<double> loaded = load_safetensors<double>(path);
  CHECK(loaded.tensors.empty());
  CHECK(loaded.metadata.empty());
  CHECK(read_file(path).size() == 16);  // size + "{}" padded to 8

  save_safetensors(path, StateDict<double>{}, {{"step", "12"}});
  loaded = load_safetensors<double>(path);
  CHECK(loaded.tensors.empty());
  CHECK(loaded.metadata == Metadata{{"step", "12"}});
}

TEST_CASE("safetensors: float checkpoints load as double exactly and double ones as float rounded") {
  TempDir dir;
  const std::string path = (dir / "model.safetensors");
  StateDict<float> f;
  f["a"] = Array<float>{{0.1f, -3.0f}, {1e30f, -0.0f}};
  save_safetensors(path, f);
  check_exact(load_safetensors<double>(path).tensors.at("a"), {2, 2}, {double(0.1f), -3.0, double(1e30f), -0.0});

  StateDict<double> d;
  d["b"] = Array<double>{1.0 / 3.0, 1e300, -2.5};
  save_safetensors(path, d);
  check_exact(load_safetensors<float>(path).tensors.at("b"), {3},
              {double(float(1.0 / 3.0)), std::numeric_limits<double>::infinity(), -2.5});
}

// ---- files from the independent Python writer -----------------------------------------

TEST_CASE("safetensors: the Python writer's F32 reference file loads with the expected values") {
  const std::string path = fixture("reference.safetensors");
  const Safetensors<float> f = load_safetensors<float>(path);
  REQUIRE(f.tensors.size() == 3);
  check_exact(f.tensors.at("weight"), {2, 3}, {1.0, -2.0, 3.5, 0.0, 1024.0, -0.0625});
  check_exact(f.tensors.at("bias"), {3}, {0.5, -1.0, 2.25});
  check_exact(f.tensors.at("scale"), {}, {-0.125});
  CHECK(f.metadata == Metadata{{"epoch", "7"}, {"format", "pt"}});

  const Safetensors<double> d = load_safetensors<double>(path);
  check_exact(d.tensors.at("weight"), {2, 3}, {1.0, -2.0, 3.5, 0.0, 1024.0, -0.0625});
  check_exact(d.tensors.at("scale"), {}, {-0.125});
}

TEST_CASE("safetensors: the Python writer's F64 reference file loads exactly as double and rounded as float") {
  const std::string path = fixture("reference_f64.safetensors");
  const Safetensors<double> d = load_safetensors<double>(path);
  REQUIRE(d.tensors.size() == 3);
  check_exact(d.tensors.at("x"), {2, 2}, {1.0 / 3.0, -2.5, 1e300, std::numeric_limits<double>::denorm_min()});
  check_exact(d.tensors.at("empty"), {0, 3}, {});
  check_exact(d.tensors.at("y"), {2}, {0.25, -4.0});  // F32 in the same file
  CHECK(d.metadata.empty());

  const Safetensors<float> f = load_safetensors<float>(path);
  check_exact(f.tensors.at("x"), {2, 2},
              {double(float(1.0 / 3.0)), -2.5, std::numeric_limits<double>::infinity(), 0.0});
  check_exact(f.tensors.at("y"), {2}, {0.25, -4.0});
}

// ---- broken files ---------------------------------------------------------------------

TEST_CASE("safetensors: broken files from the Python writer are refused with a telling message") {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"truncated.safetensors", {"too short (5 bytes)"}},
      {"header_too_large.safetensors", {"header size 1000", "larger than the rest of the file"}},
      {"invalid_json.safetensors", {"not valid JSON"}},
      {"bad_dtype.safetensors", {"tensor 'w'", "unsupported dtype 'BF16'"}},
      {"shape_mismatch.safetensors", {"tensor 'w'", "hold 12 bytes", "shape (2,2) need 16"}},
      {"offsets_past_end.safetensors", {"tensor 'w'", "[0, 16] run past the end of the data buffer (8 bytes)"}},
      {"overlapping.safetensors", {"tensors 'a' and 'b' overlap"}},
      {"hole.safetensors", {"hole in the data buffer", "bytes [4, 8)", "belong to no tensor"}},
      {"duplicate_name.safetensors", {"duplicate tensor name 'w'"}},
      {"metadata_not_string.safetensors", {"__metadata__ value of 'epoch' is not a string"}},
      {"overflow_shape.safetensors", {"tensor 'w'", "overflows"}},
  };
  for (const auto& [name, fragments] : cases) check_load_refused(fixture(name), fragments);
}

TEST_CASE("safetensors: broken headers built in the test are refused with a telling message") {
  TempDir dir;
  const std::string path = (dir / "broken.safetensors");
  const std::string four_floats(16, '\0');
  // A header with one tensor entry "w" (its JSON) and a 16-byte buffer.
  const auto refuse_entry = [&](const std::string& entry, const std::vector<std::string>& fragments) {
    write_raw(path, "{\"w\":" + entry + "}", four_floats);
    check_load_refused(path, fragments);
  };

  SUBCASE("empty file") {
    std::ofstream(path, std::ios::binary | std::ios::trunc).close();
    check_load_refused(path, {"too short (0 bytes)"});
  }
  SUBCASE("absurd header size") {
    write_raw(path, "{}", "", std::uint64_t(1) << 40);
    check_load_refused(path, {"header size 1099511627776 is absurd"});
  }
  SUBCASE("header that is not an object") {
    write_raw(path, "[1, 2]", "");
    check_load_refused(path, {"not a JSON object"});
  }
  SUBCASE("header with invalid UTF-8") {
    write_raw(path, "{\"w\xff\": {}}", "");
    check_load_refused(path, {"not valid JSON"});
  }
  SUBCASE("entry that is not an object") { refuse_entry("3", {"tensor 'w'", "not an object"}); }
  SUBCASE("missing dtype") { refuse_entry(R"({"shape":[4],"data_offsets":[0,16]})", {"tensor 'w'", "no \"dtype\""}); }
  SUBCASE("dtype not a string") {
    refuse_entry(R"({"dtype":32,"shape":[4],"data_offsets":[0,16]})", {"tensor 'w'", "\"dtype\" is not a string"});
  }
  SUBCASE("integer dtype") {
    refuse_entry(R"({"dtype":"I64","shape":[2],"data_offsets":[0,16]})", {"unsupported dtype 'I64'"});
  }
  SUBCASE("missing shape") { refuse_entry(R"({"dtype":"F32","data_offsets":[0,16]})", {"tensor 'w'", "no \"shape\""}); }
  SUBCASE("shape not an array") {
    refuse_entry(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})", {"\"shape\" is not an array"});
  }
  SUBCASE("negative shape entry") {
    refuse_entry(R"({"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]})",
                 {"tensor 'w'", "shape entry 1 is negative"});
  }
  SUBCASE("non-integer shape entry") {
    refuse_entry(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,16]})", {"shape entry 0 is not an integer"});
  }
  SUBCASE("shape entry that is a string") {
    refuse_entry(R"({"dtype":"F32","shape":["4"],"data_offsets":[0,16]})", {"shape entry 0 is not a number"});
  }
  SUBCASE("overflowing byte count") {  // 2^62 elements fit u64, 2^64 bytes do not
    refuse_entry(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]})", {"byte count exceeds 2^64"});
  }
  SUBCASE("missing data_offsets") { refuse_entry(R"({"dtype":"F32","shape":[4]})", {"no \"data_offsets\""}); }
  SUBCASE("data_offsets of the wrong length") {
    refuse_entry(R"({"dtype":"F32","shape":[4],"data_offsets":[0,8,16]})",
                 {"\"data_offsets\" is not an array [begin, end]"});
  }
  SUBCASE("negative offset") {
    refuse_entry(R"({"dtype":"F32","shape":[4],"data_offsets":[-4,12]})", {"data_offsets begin is negative"});
  }
  SUBCASE("end before begin") {
    refuse_entry(R"({"dtype":"F32","shape":[4],"data_offsets":[16,0]})", {"tensor 'w'", "end is before begin"});
  }
  SUBCASE("0-d tensor without bytes") {
    refuse_entry(R"({"dtype":"F32","shape":[],"data_offsets":[0,0]})", {"hold 0 bytes", "shape () need 4"});
  }
  SUBCASE("bytes after the last tensor") {
    refuse_entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", {"hole", "bytes [8, 16) at its end"});
  }
  SUBCASE("empty tensor inside another") {
    write_raw(path,
              R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
              R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})",
              four_floats);
    check_load_refused(path, {"tensors 'a' and 'e' overlap"});
  }
  SUBCASE("duplicate key inside an entry") {
    refuse_entry(R"({"dtype":"F32","dtype":"F64","shape":[4],"data_offsets":[0,16]})", {"duplicate key 'dtype'"});
  }
  SUBCASE("__metadata__ not an object") {
    write_raw(path, R"({"__metadata__":"epoch 3","w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", four_floats);
    check_load_refused(path, {"__metadata__ is not an object"});
  }
  SUBCASE("duplicate metadata key") {
    write_raw(path, R"({"__metadata__":{"a":"1","a":"2"},"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
              four_floats);
    check_load_refused(path, {"duplicate key 'a'"});
  }
  // Found by make fuzz (fuzz/fuzz_safetensors.cpp) and by review: these escaped as another
  // exception, hit undefined behaviour in xtensor, or overflowed the stack.
  SUBCASE("number out of double's range") {
    refuse_entry(R"({"dtype":"F32","shape":[1e999],"data_offsets":[0,16]})", {"not valid JSON", "number overflow"});
  }
  SUBCASE("zero dimension beside dimensions that overflow xtensor's signed strides") {
    refuse_entry(R"({"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]})",
                 {"tensor 'w'", "non-zero dimensions multiply past 2^63"});
  }
  SUBCASE("entry nested 300,000 deep, quoted in the message without recursing through it") {
    refuse_entry(std::string(300000, '[') + std::string(300000, ']'),
                 {"tensor 'w'", "the entry is not an object: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[..."});
  }
}

TEST_CASE("safetensors: only spaces may follow the header's JSON object, not a NUL or other bytes") {
  TempDir dir;
  const std::string path = (dir / "padded.safetensors");
  const std::string object = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  const std::string after = std::to_string(8 + object.size());  // the first byte after the object
  const std::string four_floats(16, '\0');
  const auto refuse_padding = [&](const std::string& padding, const std::vector<std::string>& fragments) {
    write_raw(path, object + padding, four_floats);
    check_load_refused(path, fragments);
    check_refused([&] { load_safetensors_from_memory<float>(read_file(path), path); }, path, fragments);
  };
  // nlohmann's parser stops at a NUL as at the end of its input: this one used to load.
  refuse_padding(std::string("\0GARBAGE{not json", 17), {"byte 0x00 at offset " + after, "only spaces (0x20)"});
  refuse_padding(" GARBAGE{not json", {"byte 0x47 at offset " + std::to_string(8 + object.size() + 1)});
  refuse_padding(std::string("\0      ", 7), {"byte 0x00 at offset " + after, "follows the header's JSON object"});
  refuse_padding("\n", {"byte 0x0a at offset " + after});
  refuse_padding("  \t", {"byte 0x09 at offset " + std::to_string(8 + object.size() + 2)});
  refuse_padding("{}", {"byte 0x7b at offset " + after});
  // A header that never closes is still invalid JSON, not a padding error.
  write_raw(path, object.substr(0, object.size() - 1) + std::string("\0 ", 2), four_floats);
  check_load_refused(path, {"not valid JSON"});

  // Spaces are padding; braces and quotes inside a name are text, not the object's end.
  write_raw(path, object + "       ", four_floats);
  CHECK(load_safetensors<float>(path).tensors.at("w").size() == 4);
  write_raw(path, R"({"a}\"{\\":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}   )", four_floats);
  CHECK(load_safetensors<double>(path).tensors.count("a}\"{\\") == 1);
}

TEST_CASE("safetensors: load_safetensors_from_memory reads and refuses the bytes as load_safetensors the file") {
  for (const std::string name : {"reference.safetensors", "reference_f64.safetensors"}) {
    CAPTURE(name);
    const std::string path = fixture(name);
    const std::string bytes = read_file(path);
    const Safetensors<float> from_file = load_safetensors<float>(path);
    const Safetensors<float> from_memory = load_safetensors_from_memory<float>(bytes, name);
    CHECK(from_memory.metadata == from_file.metadata);
    REQUIRE(from_memory.tensors.size() == from_file.tensors.size());
    for (const auto& [tensor, array] : from_file.tensors)
      check_bitwise_equal(from_memory.tensors.at(tensor), array, tensor);
    const Safetensors<double> as_double = load_safetensors_from_memory<double>(bytes);
    CHECK(as_double.tensors.size() == from_file.tensors.size());

    // One byte short: the last tensor runs past the end; the message names the given name.
    const std::string cut = bytes.substr(0, bytes.size() - 1);
    check_refused([&] { load_safetensors_from_memory<float>(cut, "cut " + name); }, "cut " + name,
                  {"load_safetensors_from_memory", "run past the end of the data buffer"});
  }
  check_refused([&] { load_safetensors_from_memory<double>(read_file(fixture("hole.safetensors"))); }, "<memory>",
                {"hole in the data buffer", "bytes [4, 8)"});
  check_refused([&] { load_safetensors_from_memory<float>(std::string_view()); }, "<memory>", {"too short (0 bytes)"});
}

TEST_CASE("safetensors: a missing file or a directory is refused") {
  TempDir dir;
  check_load_refused((dir / "nothing.safetensors"), {"does not exist"});
  fs::create_directory((dir / "a_directory"));
  check_load_refused((dir / "a_directory"), {"is a directory"});
}

// ---- saving ---------------------------------------------------------------------------

TEST_CASE("safetensors: saving refuses a tensor named __metadata__ and names that are not UTF-8") {
  TempDir dir;
  const std::string path = (dir / "model.safetensors");
  StateDict<float> state = small_state(1);
  state["__metadata__"] = Array<float>{1.0f};
  check_refused([&] { save_safetensors(path, state); }, path, {"cannot be named '__metadata__'"});

  check_refused([&] { save_safetensors(path, small_state(1), {{"bad\xff", "x"}}); }, path, {"UTF-8"});
  CHECK(dir.names().empty());  // refused before touching the disk
}

TEST_CASE("safetensors: a successful save replaces the old file and leaves no temporary file") {
  TempDir dir;
  const std::string path = (dir / "model.safetensors");
  save_safetensors(path, small_state(1));
  save_safetensors(path, small_state(5), {{"step", "2"}});
  const Safetensors<float> loaded = load_safetensors<float>(path);
  check_exact(loaded.tensors.at("w"), {2}, {5.0, 6.0});
  CHECK(loaded.metadata == Metadata{{"step", "2"}});
  CHECK(dir.names() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("safetensors: a failed save into a missing directory leaves nothing behind") {
  TempDir dir;
  const std::string path = (dir / "missing/model.safetensors");
  check_refused([&] { save_safetensors(path, small_state(1)); }, path, {"cannot create the temporary file"});
  CHECK(dir.names().empty());
}

TEST_CASE("safetensors: a failed save over a directory keeps it and leaves no temporary file") {
  TempDir dir;
  const std::string path = (dir / "model.safetensors");
  fs::create_directory(path);
  std::ofstream(path + "/keep") << "keep";
  check_refused([&] { save_safetensors(path, small_state(1)); }, path, {"cannot move the temporary file"});
  CHECK(dir.names() == std::vector<std::string>{"model.safetensors"});
  CHECK(fs::is_directory(path));
  CHECK(read_file(path + "/keep") == "keep");
}

TEST_CASE("safetensors: a write failure midway keeps the old file and removes the temporary file") {
  TempDir dir;
  const std::string path = (dir / "model.safetensors");
  save_safetensors(path, small_state(1));
  const std::string before = read_file(path);
  StateDict<float> large;
  large["w"] = Array<float>::from_shape(Shape{1000});
  {
    const FileSizeLimit limit(256);  // the 4 kB tensor cannot be written: EFBIG
    check_refused([&] { save_safetensors(path, large); }, path, {"cannot write the temporary file"});
  }
  CHECK(read_file(path) == before);
  CHECK(dir.names() == std::vector<std::string>{"model.safetensors"});
}

// Caps the open file descriptors at the lowest free one while alive, so that the next
// open fails with EMFILE (unlike directory permissions, this binds root too).
class NoMoreFiles {
 public:
  NoMoreFiles() {
    const int lowest_free = ::dup(0);
    REQUIRE(lowest_free >= 0);
    ::close(lowest_free);
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &previous_) == 0);
    rlimit limit = previous_;
    limit.rlim_cur = rlim_t(lowest_free);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &limit) == 0);
  }
  NoMoreFiles(const NoMoreFiles&) = delete;
  NoMoreFiles& operator=(const NoMoreFiles&) = delete;
  ~NoMoreFiles() { ::setrlimit(RLIMIT_NOFILE, &previous_); }

 private:
  rlimit previous_{};
};

TEST_CASE("safetensors: when the temporary file cannot be created, the save fails cleanly") {
  TempDir dir;
  const std::string path = (dir / "model.safetensors");
  save_safetensors(path, small_state(1));
  const std::string before = read_file(path);
  // The error is looked at once the limit is lifted: UBSan's type checks open files too.
  std::exception_ptr error;
  {
    const NoMoreFiles no_more_files;
    try {
      save_safetensors(path, small_state(5));
    } catch (...) {
      error = std::current_exception();
    }
  }
  REQUIRE(error);
  check_refused([&] { std::rethrow_exception(error); }, path, {"cannot create the temporary file"});
  CHECK(read_file(path) == before);
  CHECK(dir.names() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("safetensors: temporaries of dead writers are removed, a live writer's are kept") {
  TempDir dir("stale");
  long pid_max = 0;  // pids are below it: no process has this one
  std::ifstream("/proc/sys/kernel/pid_max") >> pid_max;
  REQUIRE(pid_max > 0);
  const std::string dead = dir / ("model.safetensors.tmp-" + std::to_string(pid_max) + "-0");
  const std::string live = dir / ("train_state.safetensors.tmp-" + std::to_string(::getpid()) + "-3");
  std::ofstream(dead) << "partial";
  std::ofstream(live) << "partial";
  std::ofstream(dir / "notes.tmp-1-1") << "not ours";
  CHECK(remove_stale_safetensors_temporaries(dir.path.string()) == 1);
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(live));
  CHECK(fs::exists(dir / "notes.tmp-1-1"));
}
