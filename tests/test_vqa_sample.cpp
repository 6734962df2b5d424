// xtgrad-vqa sample: each picture of the page carries its question, wrapped, and its right
// answer; the command line writes exactly render_sample's page to a PNG file and refuses
// bad flags (exit 2) and a page it cannot write (exit 1).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "page.hpp"
#include "png_check.hpp"
#include "sample.hpp"
#include "vqa_test_helpers.hpp"

namespace fs = std::filesystem;
using vqa_test::has;
using vqa_test::run_vqa;
using xtgrad::testing::check_png_is;
using xtgrad::testing::TempDir;

namespace {

// Whether the page shows the picture 5x enlarged somewhere (two corners' pixels match).
bool shows_picture(const draw::Canvas& page, const std::vector<float>& image) {
  for (std::size_t y = 0; y + 160 < page.height(); ++y)
    for (std::size_t x = 0; x + 160 < page.width(); ++x) {
      const draw::Rgb p = page.pixel(x + 2, y + 2), q = page.pixel(x + 157, y + 157);
      if (std::abs(p.r - image[0]) < 1e-6f && std::abs(p.g - image[1]) < 1e-6f && std::abs(p.b - image[2]) < 1e-6f &&
          std::abs(q.r - image[(31 * 32 + 31) * 3]) < 1e-6f && std::abs(q.b - image[(31 * 32 + 31) * 3 + 2]) < 1e-6f)
        return true;
    }
  return false;
}

}  // namespace

TEST_CASE("vqa sample: the lines under a picture are its question, wrapped, and its answer") {
  for (const vqa::Example& example : vqa::make_split(12, 3)) {
    const std::vector<std::string> lines = vqa::sample_lines(example);
    REQUIRE(lines.size() >= 2);
    CHECK(lines.back() == std::string("answer: ") + vqa::kAnswers[example.answer]);
    std::string question;
    for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
      CHECK(lines[i].size() <= 22);
      question += (question.empty() ? "" : " ") + lines[i];
    }
    CHECK(question == vqa::question_text(example.question) + "?");
  }
}

TEST_CASE("vqa sample: the page holds every picture in rows of four and the command writes it") {
  const std::vector<vqa::Example> examples = vqa::make_split(6, 5);
  const draw::Canvas page = vqa::render_sample(examples, "six triples");
  CHECK(shows_picture(page, draw::picture_of(examples[0].scene)));
  CHECK(shows_picture(page, draw::picture_of(examples[5].scene)));
  CHECK(page.height() >= 2 * 160);
  CHECK(vqa::render_sample({examples.begin(), examples.begin() + 4}, "four").height() + 160 < page.height());

  TempDir dir("vqa-sample");
  const std::string png = dir / "sample.png";
  std::string text;
  REQUIRE(run_vqa("sample --count 6 --seed 5 --png " + png, &text) == 0);
  check_png_is(png, vqa::render_sample(examples, "6 triples of the training split of --seed 5"));
  CHECK(has(text, vqa::question_text(examples[5].question) + "? " + vqa::kAnswers[examples[5].answer]));
  CHECK(has(text, "picture: " + png));

  for (const char* bad :
       {"sample --count 0 --png x.png", "sample --count -1 --png x.png", "sample --count 257 --png x.png",
        "sample --seed -2 --png x.png", "sample --count 3", "sample --png x.png --bogus"}) {
    CAPTURE(bad);
    CHECK(run_vqa(bad, &text) == 2);
    CHECK(has(text, "Usage"));
  }
  CHECK_FALSE(fs::exists("x.png"));
  // A page that cannot be written: exit 1 naming it, nothing left behind.
  const std::string nowhere = dir / "absent/page.png";
  CHECK(run_vqa("sample --png " + nowhere, &text) == 1);
  CHECK(has(text, nowhere));
  CHECK_FALSE(fs::exists(dir / "absent"));
}
