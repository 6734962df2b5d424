#include "data.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace align {

const std::array<const char*, kVocabSize> kVocabulary = {"red",  "green",  "blue",   "yellow",   "magenta",
                                                         "cyan", "circle", "square", "triangle", "cross",
                                                         "top",  "bottom", "left",   "right"};

namespace {

std::string vocabulary_list() {
  std::string out;
  for (std::size_t i = 0; i < kVocabSize; ++i) out += (i ? " " : "") + std::string(kVocabulary[i]);
  return out;
}

}  // namespace

Example generate_example(std::uint64_t seed, std::size_t index) {
  // The scene's own draws end with the object the caption describes (scenes::Scene::pick).
  scenes::Scene scene = scenes::generate_scene(seed, index);
  Example ex;
  ex.objects = std::move(scene.objects);
  ex.described = scene.pick;
  ex.caption = caption_of(ex.objects[ex.described]);
  ex.noise_seed = scene.noise_seed;
  return ex;
}

std::vector<Example> generate(std::size_t count, std::uint64_t seed) {
  std::vector<Example> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) out.push_back(generate_example(seed, i));
  return out;
}

void render_image(const Example& example, float* out) {
  scenes::render_image(example.objects, example.noise_seed, out);
}

std::vector<float> image_of(const Example& example) {
  std::vector<float> image(kImageValues);
  render_image(example, image.data());
  return image;
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
                                std::to_string(words.size()) + " in \"" + text +
                                "\"; vocabulary: " + vocabulary_list());
  // Position i takes words of one kind: colours, shapes, vertical, horizontal.
  const std::size_t first[] = {0, 6, 10, 12}, last[] = {6, 10, 12, 14};
  Caption caption{};
  for (std::size_t i = 0; i < kCaptionLength; ++i) {
    const auto* found = std::find(kVocabulary.begin() + first[i], kVocabulary.begin() + last[i], words[i]);
    if (found == kVocabulary.begin() + last[i])
      throw std::invalid_argument("unknown or misplaced word \"" + words[i] + "\" at position " +
                                  std::to_string(i + 1) + " of \"" + text + "\"; vocabulary: " + vocabulary_list());
    caption[i] = std::size_t(found - kVocabulary.begin());
  }
  return caption;
}

void patches_of(const Example& example, float* out) {
  float image[kImageValues];
  render_image(example, image);
  for (std::size_t p = 0; p < kPatches; ++p) {
    const std::size_t y0 = p / kGrid * kCellSize, x0 = p % kGrid * kCellSize;
    for (std::size_t y = 0; y < kCellSize; ++y) {
      const float* row = &image[((y0 + y) * kImageSize + x0) * kChannels];
      std::copy(row, row + kCellSize * kChannels, out + p * kPatchValues + y * kCellSize * kChannels);
    }
  }
}

}  // namespace align
