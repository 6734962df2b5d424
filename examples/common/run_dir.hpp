// A training run's directory, shared by every example that trains: one writer at a time,
// no silent replacement of another run, an identity that ties its files together, and the
// memory a run needs checked before it starts.
#pragma once

#include <cstdint>
#include <string>

namespace common {

// An exclusive lock on DIR/.lock (flock), held for the object's lifetime; the kernel
// releases it when the process dies, however it dies. The holder writes its pid into the
// file so that a refused second writer can say who holds it. Throws UsageError
// "another process (pid N) is writing to DIR" when the lock is taken.
class RunLock {
 public:
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

// The files that make `dir` a run (a model, a train state or metrics), as "model.safetensors,
// metrics.jsonl"; empty when it holds none of them.
std::string run_files_in(const std::string& dir);

// Refuses (UsageError) to start writing a run into `dir` when it holds one and the user did
// not say --overwrite: the message names the files and the two ways on.
void check_may_write_run(const std::string& dir, bool overwrite, const std::string& program);

// Creates `dir` if needed and checks that a file can be written in it, before any work is
// done; throws std::invalid_argument "cannot write to the output directory ..." otherwise.
void check_writable_dir(const std::string& dir);

// A fresh random run identity (16 hex digits), written into every file of a run when it
// starts; a resume refuses files whose identities differ.
std::string new_run_id();

// metrics.jsonl after a resume or a failed save: keeps the lines of evaluations at or
// before `last_step` (the checkpoint's), drops those of steps the run will redo. The file
// is rewritten through a temporary and a rename; a missing file stays missing.
void keep_metrics_through(const std::string& path, std::uint64_t last_step);

// Bytes of memory this process may still use: the kernel's MemAvailable, lowered to the
// address-space limit (ulimit -v) when one is set.
std::uint64_t available_memory();

// "1.9 GB", "512 MB", "3.4 TB": for messages.
std::string bytes_text(double bytes);

}  // namespace common
