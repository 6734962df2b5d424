#include "run_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "flags.hpp"

namespace common {

namespace fs = std::filesystem;

RunLock::RunLock(const std::string& dir) {
  const std::string path = (fs::path(dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw UsageError("cannot open the lock file '" + path + "': " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {0};
    const ssize_t n = ::pread(fd_, pid, sizeof pid - 1, 0);
    ::close(fd_);
    const std::string holder = n > 0 ? "pid " + std::string(pid, std::size_t(n)) : "pid unknown";
    throw UsageError("another process (" + holder + ") is writing to '" + dir +
                     "'; wait for it to finish or choose another --out");
  }
  const std::string me = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != ssize_t(me.size())) {
    // The lock holds without the pid; only a refused writer's message loses it.
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays for the next writer
}

std::string run_files_in(const std::string& dir) {
  std::string found;
  for (const char* name :
       {"model.safetensors", "train_state.safetensors", "train_state.next.safetensors", "metrics.jsonl"}) {
    std::error_code error;
    if (fs::exists(fs::path(dir) / name, error)) found += (found.empty() ? "" : ", ") + std::string(name);
  }
  return found;
}

void check_may_write_run(const std::string& dir, bool overwrite, const std::string& program) {
  const std::string files = run_files_in(dir);
  if (files.empty() || overwrite) return;
  throw UsageError("'" + dir + "' already holds a run (" + files + "); continue it with `" + program +
                   " train --resume " + dir + "`, choose another --out, or pass --overwrite to replace it");
}

void check_writable_dir(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  const std::filesystem::path probe = std::filesystem::path(dir) / ".write-test";
  std::ofstream(probe) << "ok";
  if (error || !std::filesystem::exists(probe))
    throw std::invalid_argument("cannot write to the output directory '" + dir + "'" +
                                (error ? ": " + error.message() : ""));
  std::filesystem::remove(probe, error);
}

std::string new_run_id() {
  std::random_device device;
  const std::uint64_t id = (std::uint64_t(device()) << 32) ^ device();
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
  return text;
}

namespace {
// The "step" of a metrics line ({"step": 250, ...}), or -1 when the line has none.
long long step_of(const std::string& line) {
  const auto at = line.find("\"step\":");
  return at == std::string::npos ? -1 : std::atoll(line.c_str() + at + 7);
}
}  // namespace

void keep_metrics_through(const std::string& path, std::uint64_t last_step) {
  std::ifstream in(path);
  if (!in) return;
  std::vector<std::string> kept;
  bool dropped = false;
  for (std::string line; std::getline(in, line);) {
    if (step_of(line) <= (long long)(last_step))
      kept.push_back(line);
    else
      dropped = true;
  }
  if (!dropped) return;
  const std::string temporary = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::trunc);
    for (const std::string& line : kept) out << line << "\n";
    if (!out.flush()) throw std::runtime_error("cannot rewrite '" + path + "'");
  }
  fs::rename(temporary, path);
}

std::uint64_t available_memory() {
  std::uint64_t available = UINT64_MAX;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    std::uint64_t kib = 0;
    meminfo >> kib;
    if (key == "MemAvailable:") available = kib * 1024;
    meminfo.ignore(256, '\n');
  }
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < available)
    available = limit.rlim_cur;
  return available;
}

std::string bytes_text(double bytes) {
  const char* units[] = {"bytes", "KB", "MB", "GB", "TB", "PB"};
  int unit = 0;
  while (bytes >= 1000 && unit < 5) {
    bytes /= 1000;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return text;
}

}  // namespace common
