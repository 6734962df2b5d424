// The caption task's training against PyTorch's: xtgrad-caption-dump runs a short training
// run in double, and its per-step losses must equal, within 1e-10 (relative), the float64
// losses of the same steps replayed in torch by examples/caption/reference.py (the same
// initial parameters, batches, model, loss, AdamW and schedule), which
// tests/fixtures/make_caption_fixtures.py wrote to tests/fixtures/caption/replay.json.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "fixtures.hpp"

using namespace xtgrad::testing;

TEST_CASE("caption: a short training run in double matches PyTorch's float64 replay step for step") {
  const json fixture = load_fixture("caption", "replay.json");
  const std::vector<double> expected = fixture["torch_float64_losses"].get<std::vector<double>>();
  TempDir dir("caption-replay");
  std::string output;
  const int code = run_program(XTGRAD_CAPTION_DUMP_BIN,
                               fixture["dump_args"].get<std::string>() + " --out " + dir.path.string(), &output);
  REQUIRE_MESSAGE(code == 0, output);
  std::ifstream in(dir / "losses.f64.txt");
  std::vector<double> ours;
  for (double v; in >> v;) ours.push_back(v);
  REQUIRE(ours.size() == expected.size());
  for (std::size_t k = 0; k < ours.size(); ++k) {
    INFO("step " << k + 1 << ": ours " << digits17(ours[k]) << ", torch " << digits17(expected[k])
                 << " (regenerate with tests/fixtures/make_caption_fixtures.py if the initialisation, the pictures or "
                    "the batch order changed on purpose)");
    CHECK(rel_deviation(ours[k], expected[k]) <= kPyTorchTol);
  }
}
