// safetensors writing (the format is described in xtgrad/safetensors.hpp; the reader is
// safetensors.cpp).
//
// Header JSON first (it can fail on a bad name before anything touches the disk), then a
// temporary file next to the target, fsync, rename over the target.
#include "xtgrad/safetensors.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "safetensors_detail.hpp"

namespace xtgrad {
namespace {

using safetensors_detail::errno_text;
using safetensors_detail::Failer;
using safetensors_detail::json;
using safetensors_detail::kMetadataKey;
namespace fs = std::filesystem;

template <class T> constexpr const char* dtype_name() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
  return std::is_same_v<T, float> ? "F32" : "F64";
}

// The header JSON, padded with spaces so that 8 + its size is a multiple of 8: the data
// buffer then starts 8-byte aligned, as the reference writer does it.
template <class T> std::string make_header(const Failer& fail, const StateDict<T>& tensors, const Metadata& metadata) {
  json header = json::object();
  std::uint64_t offset = 0;
  for (const auto& [name, array] : tensors) {  // std::map: sorted by name, so are the offsets
    if (name == kMetadataKey) fail("a tensor cannot be named '__metadata__'");
    const std::uint64_t nbytes = std::uint64_t(array.size()) * sizeof(T);
    json entry = json::object();
    entry["dtype"] = dtype_name<T>();
    entry["shape"] = json::array();
    for (std::size_t d : array.shape()) entry["shape"].push_back(std::uint64_t(d));
    entry["data_offsets"] = json::array({offset, offset + nbytes});
    header[name] = std::move(entry);
    offset += nbytes;
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;

  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // type_error 316: a string that is not UTF-8
    fail(std::string("cannot encode the header (tensor names and metadata must be UTF-8): ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// A temporary file next to the target. Until commit(), the destructor closes and removes
// it, so every failure (every exception on the way) cleans up after itself.
class TempFile {
 public:
  TempFile(const Failer& fail, std::string path) : fail_(fail), path_(std::move(path)) {
    // O_TRUNC: a stale temporary left by a crashed process with our pid is overwritten;
    // O_NOFOLLOW: never truncate some other file through a symlink planted at that name.
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd_ < 0) fail_("cannot create the temporary file '" + path_ + "': " + errno_text(errno));
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  void write(const void* data, std::size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {  // write() may write less than asked (and caps one call near 2 GB)
      const ssize_t n = ::write(fd_, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail_("cannot write the temporary file '" + path_ + "': " + errno_text(n < 0 ? errno : EIO));
      p += n;
      size -= std::size_t(n);
    }
  }

  // fsync, close (which can report a deferred write error), rename over target.
  void commit(const std::string& target) {
    if (::fsync(fd_) != 0) fail_("cannot flush the temporary file '" + path_ + "': " + errno_text(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail_("cannot close the temporary file '" + path_ + "': " + errno_text(errno));
    if (std::rename(path_.c_str(), target.c_str()) != 0)
      fail_("cannot move the temporary file '" + path_ + "' into place: " + errno_text(errno));
    committed_ = true;
  }

 private:
  const Failer& fail_;
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

// "<path>.tmp-<pid>-<n>": the pid keeps two processes apart, n two saves in one process
// (and lets remove_stale_safetensors_temporaries tell a dead writer's file).
constexpr std::string_view kTemporaryMark = ".safetensors.tmp-";
std::string temporary_path(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Makes the rename itself durable. Best effort: the new file is already in place, and a
// failure here must not report a save that did happen as failed.
void sync_directory_of(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// u64 little-endian, byte by byte: independent of the machine's byte order.
void encode_u64(std::uint64_t value, unsigned char (&out)[8]) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(value >> (8 * i));
}

}  // namespace

template <class T>
void save_safetensors(const std::string& path, const StateDict<T>& tensors, const Metadata& metadata) {
  const Failer fail{"save_safetensors", path};
  const std::string header = make_header(fail, tensors, metadata);
  unsigned char size_bytes[8];
  encode_u64(header.size(), size_bytes);

  TempFile file(fail, temporary_path(path));
  file.write(size_bytes, sizeof size_bytes);
  file.write(header.data(), header.size());
  for (const auto& [name, array] : tensors)  // same order as the offsets in the header
    file.write(array.data(), array.size() * sizeof(T));
  file.commit(path);
  sync_directory_of(path);
}

std::size_t remove_stale_safetensors_temporaries(const std::string& dir) {
  std::size_t removed = 0;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    const auto mark = name.find(kTemporaryMark);
    if (mark == std::string::npos) continue;
    const long pid = std::strtol(name.c_str() + mark + kTemporaryMark.size(), nullptr, 10);  // "<pid>-<n>"
    // kill(pid, 0) only asks whether the process exists; ESRCH: it does not.
    if (pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH && fs::remove(entry.path(), error)) ++removed;
  }
  return removed;
}

template void save_safetensors<float>(const std::string&, const StateDict<float>&, const Metadata&);
template void save_safetensors<double>(const std::string&, const StateDict<double>&, const Metadata&);

}  // namespace xtgrad
