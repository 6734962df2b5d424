#!/usr/bin/env python3
"""Size gate: no .cpp/.hpp file over 400 lines, no function over 60 lines.

Usage: tools/check_size.py [--verbose] [DIR|FILE ...]   (default: autograd layers optim io distributed examples)

With comments, literals and preprocessor lines blanked out, a '{' opens a function body when
the code since the previous ';', '{' or '}' looks like a function header. A function runs
from its header's first line to its closing brace; braces inside it (lambdas) belong to it.
"""
import argparse
import os
import re
import sys

MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
DEFAULT_DIRS = ["autograd", "layers", "optim", "io", "distributed", "examples"]
LITERAL = re.compile(r'\b\d[\w.\']*|//[^\n]*|/\*.*?(?:\*/|\Z)|(?:u8|[uUL])?R"([^(\s]*)\(|"(?:\\.|[^"\\\n])*"?'
                     r"|'(?:\\.|[^'\\\n])*'?|^[ \t]*#(?:\\\n|[^\n])*", re.S | re.M)
PREFIX = re.compile(r"^((public|private|protected)\s*:(?!:)\s*|template\s*<[^{};]*?>\s*)+")
SCOPE = re.compile(r"^(typedef\s+)?(namespace|class|struct|union|enum|extern)\b")
INIT_LIST = re.compile(r"\)\s*(noexcept\s*)?:(?!:)")  # "Foo(int a) : a_(a)": the parameters end at ')'
TRAILER = re.compile(r"(\s*(const|noexcept(\s*\([^()]*\))?|override|final|mutable|&&?|->\s*[\w:<>,\s*&]+))*\s*$")
NAME = re.compile(r"(\w+(<[^<>()]*>)?::)*(operator\s*(\(\)|\[\]|[^\w\s(]+|\s[\w:<>*&\s]+?)|~?\w+)\s*$")
NOT_NAMES = {"if", "for", "while", "switch", "catch", "return", "sizeof", "decltype", "alignas", "static_assert"}


def strip_code(text):
  """text with comments, string/char literals and preprocessor lines blanked (newlines kept)."""
  out, i = [], 0
  for m in LITERAL.finditer(text):
    if m.start() < i or m.group(0)[0].isdigit():
      continue  # inside a raw string already blanked, or a number (1'000 has no character literal)
    end = m.end()
    if m.group(1) is not None:  # a raw string runs to )delim"
      close = text.find(")" + m.group(1) + '"', end)
      end = len(text) if close < 0 else close + len(m.group(1)) + 2
    out.append(text[i:m.start()] + re.sub(r"[^\n]", " ", text[m.start():end]))
    i = end
  return "".join(out) + text[i:]


def function_name(header):
  """The name of the function whose header this is, or None when it is no function header."""
  header = PREFIX.sub("", header)
  flat = re.sub(r"operator\s*(\(\)|[^\w\s(]+)", "operator", header)
  while re.search(r"\([^()]*\)", flat):  # empty every (...) group: default arguments hold '='
    flat = re.sub(r"\([^()]*\)", "", flat)
  if SCOPE.match(header) or "=" in flat:  # a class, or an initializer (a lambda stored in a variable)
    return None
  init_list = INIT_LIST.search(header)
  header = header[:init_list.start() + 1] if init_list else header
  header = header[:TRAILER.search(header).start()]
  depth, i = 0, len(header) - 1
  while header.endswith(")") and i >= 0:  # back to the '(' that opens the parameter list
    depth += {")": 1, "(": -1}.get(header[i], 0)
    if depth == 0:
      name = NAME.search(header[:i])
      return name.group(0).strip() if name and name.group(0).strip() not in NOT_NAMES else None
    i -= 1
  return None


def find_functions(code):
  """Yields (name, first line, last line) for every function body in the stripped code."""
  stack = []  # one (kind, name, first line) per open brace; kind: "scope", "function" or "opaque"
  since, since_start, i = "", 0, 0
  while i < len(code):
    c, at_scope = code[i], not stack or stack[-1][0] == "scope"
    # A '{' inside a header: a default argument's, or a member's brace initializer.
    if c == "{" and at_scope and (since.count("(") > since.count(")") or
                                  (INIT_LIST.search(since) and re.search(r"[\w>]\s*$", since))):
      depth, j = 0, i
      while depth or j == i:  # take the whole {...} into the header
        depth += {"{": 1, "}": -1}.get(code[j], 0)
        j += 1
      since, i = since + code[i:j], j
      continue
    if c == "{":
      name = function_name(since.strip()) if at_scope else None
      keyword = SCOPE.match(PREFIX.sub("", since.strip()))
      if name:
        lead = re.match(r"\s*((public|private|protected)\s*:(?!:)\s*)*", since).end()  # not part of the header
        stack.append(("function", name, code.count("\n", 0, since_start + lead) + 1))
      else:  # a namespace or class holds functions; an enum, initializer or nested block none
        stack.append(("scope" if at_scope and keyword and keyword.group(2) != "enum" else "opaque", None, 0))
    elif c == "}" and stack:
      kind, name, first_line = stack.pop()
      if kind == "function":
        yield name, first_line, code.count("\n", 0, i) + 1
    since, since_start = ("", i + 1) if c in "{};" else (since + c, since_start)
    i += 1


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("dirs", nargs="*", help="directories (or files) to check")
  parser.add_argument("--verbose", action="store_true", help="also list the 10 longest functions")
  args = parser.parse_args()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  dirs = args.dirs or [os.path.relpath(os.path.join(root, d)) for d in DEFAULT_DIRS]
  paths = sorted({os.path.join(top, name) for d in dirs for top, _, names in os.walk(d)
                  for name in names if name.endswith((".cpp", ".hpp"))} | {d for d in dirs if os.path.isfile(d)})
  if not paths:  # a mistyped directory must not pass
    sys.exit(f"check_size: no .cpp/.hpp files in {' '.join(dirs)}")
  problems, functions = [], []
  for path in paths:
    with open(path, encoding="utf-8", errors="replace") as f:
      text = f.read()
    if len(text.splitlines()) > MAX_FILE_LINES:
      problems.append(f"{path}: {len(text.splitlines())} lines (limit {MAX_FILE_LINES})")
    for name, first, last in find_functions(strip_code(text)):
      functions.append((last - first + 1, path, first, name))
      if last - first + 1 > MAX_FUNCTION_LINES:
        problems.append(f"{path}:{first}: function {name} is {last - first + 1} lines (limit {MAX_FUNCTION_LINES})")
  if args.verbose:
    for length, path, line, name in sorted(functions, key=lambda f: -f[0])[:10]:
      print(f"  {length:4d} lines  {path}:{line}: {name}")
  print("\n".join(problems) if problems else f"check_size: {len(paths)} files, {len(functions)} functions: none "
        f"over {MAX_FILE_LINES} lines per file or {MAX_FUNCTION_LINES} per function")
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
