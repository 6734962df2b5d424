#!/usr/bin/python3
"""The seeds of fuzz/corpus/ (extra_*.safetensors); make fuzz also seeds from the test
fixtures, tests/fixtures/safetensors/. Standard library only; deterministic:
    /usr/bin/python3 fuzz/make_seed_corpus.py
Each seed is small (libFuzzer mutates it, make fuzz caps inputs at -max_len) and reaches a
corner of the reader that the test fixtures do not.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
from make_safetensors_fixtures import file_bytes, one  # noqa: E402  (the fixtures' file layout)

OUT_DIR = os.path.join(HERE, "corpus")


SEEDS = {
    # Valid files.
    "empty_header": file_bytes("{}"),
    "metadata_only": file_bytes({"__metadata__": {"step": "12", "config": "{\"dim\": 32}"}}),
    "zero_d_f64": file_bytes({"s": one("F64", [], 0, 8)}, struct.pack("<d", -0.0)),
    "zero_size_tensors": file_bytes({"a": one("F32", [0], 0, 0), "b": one("F64", [3, 0, 2], 0, 0),
                                     "c": one("F32", [1], 0, 4)}, struct.pack("<f", 1.5)),
    "special_values": file_bytes({"x": one("F32", [2, 2], 0, 16), "y": one("F64", [3], 16, 40)},
                                 struct.pack("<4f", float("inf"), float("-inf"), float("nan"), 1e-45)
                                 + struct.pack("<3d", 1e300, -1e-320, float("nan"))),
    "unicode_names": file_bytes({"caf\u00e9.w": one("F32", [1], 0, 4), "\u6f22.b": one("F32", [1], 4, 8),
                                 "__metadata__": {"\u00e9": "\\\"\n\t\u2603"}}, struct.pack("<2f", 1, 2)),
    "space_padded": file_bytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}     ',
                               struct.pack("<2f", 3, 4)),
    "zero_dim_huge_other": file_bytes({"z": one("F32", [0, 4294967296, 4294967296], 0, 0)}),
    # Broken files.
    "header_size_zero": file_bytes("", b"{}", header_size=0),
    "header_size_huge": file_bytes("{}", header_size=2**63 + 5),
    "header_size_under_limit": file_bytes("{}", header_size=99_999_999),
    "offsets_wrap": file_bytes({"w": one("F32", [1], 2**64 - 4, 0)}, b"abcd"),
    "numbers_as_floats": file_bytes('{"w":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4.0]}}', b"abcd"),
    # A number past double's range: nlohmann throws out_of_range, not parse_error, and it
    # escaped the reader as a foreign exception (found by the fuzzer).
    "number_overflow": file_bytes('{"w":{"dtype":"F32","shape":[10.5e550],"data_offsets":[0,4]}}', b"abcd"),
    "negative_shape": file_bytes({"w": one("F32", [-1, -4], 0, 16)}, b"\0" * 16),
    "duplicate_metadata_key": file_bytes('{"__metadata__":{"k":"a","k":"b"}}'),
    "nested_in_entry": file_bytes('{"w":{"dtype":"F32","shape":[[[[[[[[[[1]]]]]]]]]],"data_offsets":[0,4]}}',
                                  b"abcd"),
    # An entry nested 2,000 deep. Its error message used to dump() it, one stack frame per
    # level: 300,000 levels (a 600 KB file) overflowed the stack. brief() now stops early;
    # tests/test_safetensors.cpp has the deep case, too big for -max_len here.
    "deep_nesting": file_bytes('{"w":' + "[" * 2000 + "]" * 2000 + "}"),
    "unknown_fields": file_bytes({"w": dict(one("F32", [1], 0, 4), extra=[1, {"a": None}])}, b"abcd"),
    "bad_utf8": file_bytes(b'{"w\xff":{}}'),
    # Only spaces may follow the JSON object inside the header. nlohmann's parser took a NUL
    # for the end of its input, so the first of these loaded while the same garbage after
    # a space was refused.
    "nul_then_garbage": file_bytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}\0GARBAGE{not json',
                                   struct.pack("<2f", 3, 4)),
    "nul_then_spaces": file_bytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}\0      ',
                                  struct.pack("<2f", 3, 4)),
    "newline_padded": file_bytes('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}\n\t  ',
                                 struct.pack("<2f", 3, 4)),
}


def main():
    for name, content in SEEDS.items():
        path = os.path.join(OUT_DIR, "extra_%s.safetensors" % name)
        with open(path, "wb") as f:
            f.write(content)
        print("%-50s %6d bytes" % (os.path.relpath(path), len(content)))


if __name__ == "__main__":
    main()
