// A model of your own, written the PyTorch way: a small CNN learns in which quadrant of an
// 8x8 picture a bright 2x2 square lies. Training loop with AdamW and a warm-up-then-cosine
// schedule, accuracy on held-out pictures, save and load with safetensors. Exits 1 unless
// the loaded model reaches 95% accuracy.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <utility>
#include <vector>

#include <xtgrad/nn.hpp>           // the engine, layers and optimizers
#include <xtgrad/safetensors.hpp>  // checkpoints (not part of nn.hpp)

using namespace xtgrad;

// Conv -> ReLU -> pool -> linear, as a PyTorch nn.Module with the same attribute names.
struct QuadrantNet : Module<float>, Callable<QuadrantNet> {
  explicit QuadrantNet(Generator& gen) : Module<float>("QuadrantNet") {
    conv = register_module("conv", std::make_shared<Conv2d<float>>(1, 8, 3, ConvOptions().set_padding(1), gen));
    pool = register_module("pool", std::make_shared<MaxPool2d<float>>(2));
    fc = register_module("fc", std::make_shared<Linear<float>>(8 * 4 * 4, 4, true, gen));
  }
  // x (B,1,8,8) -> logits (B,4)
  Tensor<float> forward(const Tensor<float>& x) {
    const Tensor<float> h = (*pool)(relu((*conv)(x)));  // (B,8,4,4)
    return (*fc)(reshape(h, {h.shape()[0], -1}));
  }
  std::shared_ptr<Conv2d<float>> conv;
  std::shared_ptr<MaxPool2d<float>> pool;
  std::shared_ptr<Linear<float>> fc;
};

// n pictures (n,1,8,8) of noise with one bright 2x2 square, and its quadrant 0..3.
std::pair<Tensor<float>, std::vector<std::size_t>> make_batch(std::size_t n, Generator& gen) {
  Tensor<float> x = rand<float>({n, 1, 8, 8}, gen, 0.0f, 0.3f);
  const Tensor<float> where_to = rand<float>({n, 3}, gen, 0.0f, 1.0f);
  std::vector<std::size_t> labels(n);
  auto& pixels = x.mutable_data();
  for (std::size_t i = 0; i < n; ++i) {
    labels[i] = static_cast<std::size_t>(where_to.data()(i, 0) * 4) % 4;
    const std::size_t offset = static_cast<std::size_t>(where_to.data()(i, 1) * 3) % 3;  // 0..2 inside
    const std::size_t row = (labels[i] / 2) * 4 + offset, col = (labels[i] % 2) * 4 + offset;
    for (std::size_t r = row; r < row + 2; ++r)
      for (std::size_t c = col; c < col + 2; ++c) pixels(i, 0, r, c) = 1.0f;
  }
  return {x, labels};
}

double accuracy(QuadrantNet& model, const Tensor<float>& x, const std::vector<std::size_t>& labels) {
  NoGradGuard no_grad;
  model.eval();
  const Indices predicted = argmax(model(x), -1);
  std::size_t correct = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) correct += predicted(i) == labels[i];
  model.train();
  return double(correct) / double(labels.size());
}

int main() {
  Generator gen(0);
  QuadrantNet model(gen);
  std::cout << model.summary() << '\n';

  const std::size_t steps = 150, warmup = 15;
  AdamW<float> opt(model.parameters(), AdamWOptions().set_lr(1e-2));
  LRScheduler<float> scheduler(
      opt, std::make_shared<SequentialLR>(
               std::vector<std::shared_ptr<const LRSchedule>>{std::make_shared<LinearWarmup>(warmup, 0.1),
                                                              std::make_shared<CosineAnnealingLR>(steps - warmup)},
               std::vector<std::size_t>{warmup}));
  for (std::size_t step = 1; step <= steps; ++step) {
    auto [x, y] = make_batch(32, gen);
    Tensor<float> loss = cross_entropy(model(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    scheduler.step();
    if (step % 50 == 0) std::printf("step %zu loss %.4f lr %.5f\n", step, double(loss.item()), opt.lr());
  }

  Generator test_gen(1);
  const auto [test_x, test_y] = make_batch(500, test_gen);
  const double trained = accuracy(model, test_x, test_y);

  const std::string path = (std::filesystem::temp_directory_path() / "quadrants.safetensors").string();
  save_safetensors(path, model.state_dict());  // written to a temporary, then renamed
  Generator other(42);
  QuadrantNet loaded(other);
  loaded.load_state_dict(load_safetensors<float>(path).tensors);
  const double reloaded = accuracy(loaded, test_x, test_y);
  std::filesystem::remove(path);

  std::printf("test accuracy %.3f, after save and load %.3f\n", trained, reloaded);
  return reloaded >= 0.95 && reloaded == trained ? 0 : 1;
}
