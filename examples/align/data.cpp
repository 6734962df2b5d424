#include "data.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace align {

const std::array<const char*, kVocabSize> kVocabulary = {
    "red", "green", "blue", "yellow", "magenta", "cyan", "circle",
    "square", "triangle", "cross", "top", "bottom", "left", "right"};

namespace {

constexpr float kColourRGB[kColours][3] = {
    {0.90f, 0.15f, 0.15f}, {0.15f, 0.80f, 0.20f}, {0.20f, 0.35f, 0.95f},
    {0.95f, 0.90f, 0.15f}, {0.90f, 0.20f, 0.85f}, {0.15f, 0.85f, 0.90f}};

}  // namespace

bool painted(std::size_t shape, double dy, double dx, double r) {
  switch (shape) {
    case 0: return dy * dy + dx * dx <= r * r;                                            // circle
    case 1: return std::abs(dy) <= 0.85 * r && std::abs(dx) <= 0.85 * r;                  // square
    case 2: return dy >= -r && dy <= 0.8 * r && std::abs(dx) <= 0.6 * (dy + r);           // triangle
    default:                                                                               // cross
      return (std::abs(dy) <= 0.35 * r && std::abs(dx) <= r) || (std::abs(dx) <= 0.35 * r && std::abs(dy) <= r);
  }
}

namespace {

Example make_example(xtgrad::Generator& gen) {
  Example ex;
  ex.image.resize(kImageSize * kImageSize * kChannels);
  for (float& v : ex.image) v = float(0.1 + gen.normal(0.0, 0.03));

  // 1 to 3 objects in distinct cells: the first n of a shuffled list of the 16 cells.
  const std::size_t n = 1 + gen.below(3);
  std::array<std::size_t, kPatches> cells;
  for (std::size_t i = 0; i < kPatches; ++i) cells[i] = i;
  for (std::size_t i = 0; i < n; ++i) std::swap(cells[i], cells[i + gen.below(kPatches - i)]);

  for (std::size_t k = 0; k < n; ++k) {
    Object obj{gen.below(kColours), gen.below(kShapes), cells[k]};
    float rgb[3];
    for (std::size_t c = 0; c < 3; ++c) rgb[c] = float(kColourRGB[obj.colour][c] + gen.uniform(-0.08, 0.08));
    const double r = gen.uniform(2.6, 3.5);
    const double cy = double(obj.cell / kGrid * kCellSize) + kCellSize / 2.0 + gen.uniform(-0.5, 0.5);
    const double cx = double(obj.cell % kGrid * kCellSize) + kCellSize / 2.0 + gen.uniform(-0.5, 0.5);
    for (std::size_t y = 0; y < kImageSize; ++y)
      for (std::size_t x = 0; x < kImageSize; ++x)
        if (painted(obj.shape, y + 0.5 - cy, x + 0.5 - cx, r))
          std::copy(rgb, rgb + 3, &ex.image[(y * kImageSize + x) * kChannels]);
    ex.objects.push_back(obj);
  }
  for (float& v : ex.image) v = std::clamp(v, 0.0f, 1.0f);
  ex.described = gen.below(n);
  ex.caption = caption_of(ex.objects[ex.described]);
  return ex;
}

std::string vocabulary_list() {
  std::string out;
  for (std::size_t i = 0; i < kVocabSize; ++i) out += (i ? " " : "") + std::string(kVocabulary[i]);
  return out;
}

}  // namespace

std::vector<Example> generate(std::size_t count, std::uint64_t seed) {
  xtgrad::Generator gen(seed);
  std::vector<Example> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(make_example(gen));
  return out;
}

Caption caption_of(const Object& object) {
  const std::size_t row = object.cell / kGrid, col = object.cell % kGrid;
  return {object.colour, 6 + object.shape, row < 2 ? std::size_t(10) : std::size_t(11),
          col < 2 ? std::size_t(12) : std::size_t(13)};
}

bool matches(const Caption& caption, const Example& example) {
  return std::any_of(example.objects.begin(), example.objects.end(),
                     [&](const Object& o) { return caption_of(o) == caption; });
}

std::string caption_text(const Caption& caption) {
  std::string out;
  for (std::size_t i = 0; i < kCaptionLength; ++i) out += (i ? " " : "") + std::string(kVocabulary[caption[i]]);
  return out;
}

Caption parse_caption(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  if (words.size() != kCaptionLength)
    throw std::invalid_argument("a caption has 4 words (colour shape top|bottom left|right), got " +
                                std::to_string(words.size()) + " in \"" + text + "\"; vocabulary: " + vocabulary_list());
  // Position i takes words of one kind: colours, shapes, vertical, horizontal.
  const std::size_t first[] = {0, 6, 10, 12}, last[] = {6, 10, 12, 14};
  Caption caption{};
  for (std::size_t i = 0; i < kCaptionLength; ++i) {
    const auto* found = std::find(kVocabulary.begin() + first[i], kVocabulary.begin() + last[i], words[i]);
    if (found == kVocabulary.begin() + last[i])
      throw std::invalid_argument("unknown or misplaced word \"" + words[i] + "\" at position " + std::to_string(i + 1) +
                                  " of \"" + text + "\"; vocabulary: " + vocabulary_list());
    caption[i] = std::size_t(found - kVocabulary.begin());
  }
  return caption;
}

void patches_of(const Example& example, float* out) {
  for (std::size_t p = 0; p < kPatches; ++p) {
    const std::size_t y0 = p / kGrid * kCellSize, x0 = p % kGrid * kCellSize;
    for (std::size_t y = 0; y < kCellSize; ++y) {
      const float* row = &example.image[((y0 + y) * kImageSize + x0) * kChannels];
      std::copy(row, row + kCellSize * kChannels, out + p * kPatchValues + y * kCellSize * kChannels);
    }
  }
}

}  // namespace align
