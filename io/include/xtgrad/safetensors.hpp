// xtgrad: checkpoints in the safetensors format (https://github.com/huggingface/safetensors).
//
// Layout of a file:
//   8 bytes   u64 little-endian N, the header size
//   N bytes   UTF-8 JSON object, possibly padded with trailing spaces:
//               { "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                 ...,
//                 "__metadata__": {"<key>": "<string value>", ...} }     (optional)
//   the rest  the data buffer; offsets are relative to its start, values little-endian,
//             C (row-major) order. Tensors tile the buffer exactly: no overlap, no hole.
//
// Our writer sorts tensors by name, lays them out contiguously from offset 0, pads the
// header with spaces so that the buffer starts 8-byte aligned, and stores float as F32 and
// double as F64. The reader accepts F32 and F64 (converting to T) and refuses other dtypes.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

#include "xtgrad/tensor.hpp"

namespace xtgrad {

// String -> string, stored under "__metadata__" (e.g. {"epoch": "3", "format": "pt"}).
using Metadata = std::map<std::string, std::string>;

// A checkpoint that cannot be read or written: the message names the file and the problem
// (and the tensor, where there is one).
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class T> struct Safetensors {
  StateDict<T> tensors;
  Metadata metadata;
};

// Writes to a temporary file in the same directory (path + ".tmp-<pid>-<n>"), flushes and
// fsyncs it, then renames it over path: a crash never leaves a broken file at path.
// Throws CheckpointError (and removes the temporary) on any failure, e.g. an unwritable or
// missing directory, a path that is a directory, a full disk, a tensor named
// "__metadata__" or a name that is not valid UTF-8.
template <class T>
void save_safetensors(const std::string& path, const StateDict<T>& tensors, const Metadata& metadata = {});

// Removes the temporary files that saves (above) of processes no longer alive left in dir
// when they were killed mid-write; returns how many. A live writer's file is kept.
std::size_t remove_stale_safetensors_temporaries(const std::string& dir);

// Reads the whole file and checks everything (header, dtypes, shapes, offsets, that the
// tensors tile the buffer, duplicate names, metadata) before returning; throws
// CheckpointError naming the problem.
template <class T> Safetensors<T> load_safetensors(const std::string& path);

// The same reader and checks over a checkpoint's bytes already in memory (the whole file's
// contents); name stands for the file in the CheckpointError messages.
template <class T>
Safetensors<T> load_safetensors_from_memory(std::string_view bytes, const std::string& name = "<memory>");

extern template void save_safetensors<float>(const std::string&, const StateDict<float>&, const Metadata&);
extern template void save_safetensors<double>(const std::string&, const StateDict<double>&, const Metadata&);
extern template Safetensors<float> load_safetensors<float>(const std::string&);
extern template Safetensors<double> load_safetensors<double>(const std::string&);
extern template Safetensors<float> load_safetensors_from_memory<float>(std::string_view, const std::string&);
extern template Safetensors<double> load_safetensors_from_memory<double>(std::string_view, const std::string&);

}  // namespace xtgrad
