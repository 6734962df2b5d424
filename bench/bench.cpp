// xtgrad-bench: one JSON object per line. The first says what runs the products (CPU, BLAS
// library and kernels, and the one-core FMA peak, peak.cpp); then one per case,
// {"case": ..., "ms": <median>, "gflops": ..., "of_peak": gflops / (threads x peak)}.
//   xtgrad-bench [--case NAME] [--threads N] [--repeats N] | --machine (that line only)
// Each case runs a warm-up, then its repeats; ms is their median. A training step is
// forward, backward and an Adam step (lr 1e-3) with loss = mean of the squared output,
// unless the case says otherwise. Reference cases ("ref_") time the raw library call the
// engine builds on, so ratios are measured side by side in one run. bench/compare_torch.py
// runs the same cases in PyTorch.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../examples/caption/train.hpp"  // by path: align's headers have the same names
#include "../examples/vqa/train.hpp"      // by path too
#include "model.hpp"
#include "peak.hpp"
#include "training.hpp"
#include "xtgrad/backend.hpp"
#include "xtgrad/nn.hpp"

namespace {

using namespace xtgrad;
using Clock = std::chrono::steady_clock;

struct Measurement {
  double ms;                     // median over repeats
  std::optional<double> gflops;  // when the case has a FLOP count
  std::map<std::string, double> extra;
};

struct Case {
  std::string name;
  std::string description;
  int repeats;  // default; --repeats overrides
  std::function<Measurement(int repeats)> run;
};

// Median wall time of fn in milliseconds, after a warm-up of a few calls.
double median_ms(const std::function<void()>& fn, int repeats) {
  for (int i = 0; i < std::max(2, repeats / 10); ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = Clock::now();
    fn();
    times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

// GFLOP/s when the case counts its FLOPs (flops > 0)
Measurement with_flops(double ms, double flops) {
  return {ms, flops > 0 ? std::optional<double>(flops / (ms * 1e6)) : std::nullopt, {}};
}

// ---- matmul -----------------------------------------------------------------------------
// (n,n) x (n,n) through the engine's matmul op, forward only.
Measurement matmul_case(std::size_t n, int repeats) {
  Generator gen(0);
  const auto a = randn<float>({n, n}, gen), b = randn<float>({n, n}, gen);
  return with_flops(median_ms([&] { matmul(a, b); }, repeats), 2.0 * n * n * n);
}

// The same product as one raw cblas_sgemm into a preallocated buffer. One thread whatever
// --threads says: set_num_threads keeps OpenBLAS at one (xtgrad splits the work itself).
Measurement sgemm_case(std::size_t n, int repeats) {
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  const int ni = static_cast<int>(n);
  const auto sgemm = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.f, a.data(), ni, b.data(), ni, 0.f, c.data(),
                ni);
  };
  return with_flops(median_ms(sgemm, repeats), 2.0 * n * n * n);
}

// ---- training steps ---------------------------------------------------------------------
// One step: zero_grad, loss = loss_of(), backward, Adam step.
Measurement training_step(const std::vector<Tensor<float>>& params, const std::function<Tensor<float>()>& loss_of,
                          double flops, int repeats) {
  Adam<float> optimizer(params, AdamOptions().set_lr(1e-3));
  const auto step = [&] {
    optimizer.zero_grad();
    Tensor<float> loss = loss_of();
    loss.backward();
    optimizer.step();
  };
  return with_flops(median_ms(step, repeats), flops);
}

Tensor<float> mean_square(const Tensor<float>& out) { return mean(out * out); }

// FLOPs of one attention training step. Forward: projections, scores, weighted values,
// output projection. Backward: two products per product, except the input projections,
// whose inputs (data) need no gradient: only their weight gradient.
double attention_step_flops(double b, double lq, double lk, double dq, double dk, double dv, double d) {
  const double projections = 2 * b * (lq * dq * d + lk * dk * d + lk * dv * d);
  const double rest = 2 * b * (2 * lq * lk * d + lq * d * d);
  return 2 * projections + 3 * rest;
}

Measurement mha_case(std::size_t b, std::size_t lq, std::size_t lk, std::size_t width, std::size_t heads, int repeats) {
  Generator gen(0);
  MultiHeadCrossAttention<float> attn(width, heads, width, width, width, true, 0.0, gen);
  const auto q = randn<float>({b, lq, width}, gen), kv = randn<float>({b, lk, width}, gen);
  return training_step(
      attn.parameters(),
      [&] { return mean_square(attn.forward(q, kv, kv, std::nullopt, std::nullopt, true, false).output); },
      attention_step_flops(b, lq, lk, width, width, width, width), repeats);
}

// The seed's CrossAttention: batch 2, 4 queries of 128, 6 keys/values of 256, output 512.
Measurement seed_case(int repeats) {
  Generator gen(0);
  CrossAttention<float> attn(128, 256, 256, 512, gen);
  const auto q = randn<float>({2, 4, 128}, gen), k = randn<float>({2, 6, 256}, gen), v = randn<float>({2, 6, 256}, gen);
  return training_step(
      attn.parameters(), [&] { return mean_square(attn.forward(q, k, v).output); },
      attention_step_flops(2, 4, 6, 128, 256, 256, 512), repeats);
}

// A small CNN step: batch 32, 3 -> 32 channels on 32x32 (3x3, padding 1), ReLU, then
// 32 -> 64 with stride 2 (3x3, padding 1).
Measurement conv_case(int repeats) {
  Generator gen(0);
  Conv2d<float> conv1(3, 32, 3, 1, 1, 1, 1, true, gen), conv2(32, 64, 3, 2, 1, 1, 1, true, gen);
  const auto x = randn<float>({32, 3, 32, 32}, gen);
  std::vector<Tensor<float>> params = conv1.parameters();
  for (const auto& p : conv2.parameters()) params.push_back(p);
  // forward 2 (N P Cout K) per conv; backward twice that, less conv1's input gradient
  const double f1 = 2.0 * 32 * 1024 * 32 * 27, f2 = 2.0 * 32 * 256 * 64 * 288;
  return training_step(
      params, [&] { return mean_square(conv2.forward(relu(conv1.forward(x)))); }, 2 * f1 + 3 * f2, repeats);
}

// An LSTM step: batch 32, sequence 16, input 64, hidden 128, one layer, seq-first.
Measurement lstm_case(int repeats) {
  Generator gen(0);
  LSTM<float> lstm(64, 128, 1, true, false, gen);
  const auto x = randn<float>({16, 32, 64}, gen);
  const double forward = 2.0 * 16 * 32 * 4 * 128 * (64 + 128);
  return training_step(
      lstm.parameters(), [&] { return mean_square(lstm.forward(x).output); }, 3 * forward, repeats);
}

// A decoder layer step: batch 32, 16 causal target tokens, 16 memory tokens, width 128,
// 4 heads, feed-forward 512, no dropout, batch first.
Measurement decoder_case(int repeats) {
  Generator gen(0);
  TransformerDecoderLayer<float> layer(128, 4, 512, 0.0, Activation::relu, 1e-5, true, false, gen);
  const auto tgt = randn<float>({32, 16, 128}, gen), memory = randn<float>({32, 16, 128}, gen);
  return training_step(
      layer.parameters(),
      [&] {
        return mean_square(layer.forward(tgt, memory, std::nullopt, std::nullopt, std::nullopt, std::nullopt, true));
      },
      0.0, repeats);
}

// Greedy decoding of 16 tokens (vocabulary 100, width 128, 4 heads, one decoder layer,
// batch 8, memory of 16), no gradient: with the key/value cache, or (cached = false)
// running the causal forward over the whole prefix at every step.
Measurement decode_case(bool cached, int repeats) {
  Generator gen(0);
  Embedding<float> embed(100, 128, gen);
  TransformerDecoderLayer<float> layer(128, 4, 512, 0.0, Activation::relu, 1e-5, true, false, gen);
  Linear<float> head(128, 100, true, gen);
  layer.eval();
  const auto memory = randn<float>({8, 16, 128}, gen);
  const auto decode = [&] {
    NoGradGuard no_grad;
    std::vector<std::size_t> tokens(8, 0);  // the start token, then each step's argmax
    std::vector<Tensor<float>> inputs;
    DecoderLayerCache<float> cache = layer.start_decoding(memory);
    for (int t = 0; t < 16; ++t) {
      const Tensor<float> x = embed.forward(tokens, {8, 1});  // (8, 1, 128)
      inputs.push_back(x);
      const Tensor<float> h = cached ? layer.forward_step(x, cache)
                                     : narrow(layer.forward(concat(inputs, 1), memory, std::nullopt, std::nullopt,
                                                            std::nullopt, std::nullopt, true),
                                              1, std::size_t(t), 1);
      const Indices next = argmax(head.forward(h), -1);  // (8, 1)
      tokens.assign(next.begin(), next.end());
    }
  };
  return {median_ms(decode, repeats), std::nullopt, {}};
}

// 200 times y = tanh(y * 1.01 + 0.1) - 0.01 * y on 8 elements: 1,000 ops, then backward.
Measurement overhead_case(int repeats) {
  const Tensor<float> x = ones<float>({8}, true);
  const auto run = [&] {
    Tensor<float> y = x;
    for (int i = 0; i < 200; ++i) y = tanh(y * 1.01f + 0.1f) - 0.01f * y;
    sum(y).backward();
  };
  Measurement m{median_ms(run, repeats), std::nullopt, {}};
  m.extra["us_per_op"] = m.ms * 1000.0 / 1000.0;
  return m;
}

// One step of the toy task's default model (docs/align-task.md), data generated beforehand.
Measurement align_case(int repeats) {
  const std::vector<align::Example> data = align::generate(32, 0);
  std::vector<std::size_t> batch(32);
  for (std::size_t i = 0; i < 32; ++i) batch[i] = i;
  const Tensor<float> patches = align::patch_batch<float>(data, batch);
  const std::vector<std::size_t> ids = align::caption_batch(data, batch);
  Generator gen(0);
  align::AlignModel<float> model(align::ModelConfig{}, gen);
  // Products: the patch embedding (its input is data: backward only the weight gradient),
  // then k and v projections of 32 x 16 patches, q of 32 x 4 tokens, scores and weighted
  // values of 32 x 32 pairs, out_proj of every pair's 4 tokens, the pair head (forward and
  // two backward products each). This counts the model as written; the fused all-pairs op
  // folds out_proj into the values and does about 12 MFLOP fewer per step.
  const double b = 32, d = 64, patch_embedding = 2 * b * 16 * 192 * d;
  const double rest =
      2 * (2 * b * 16 * d * d + b * 4 * d * d + 2 * b * b * 4 * 16 * d + b * b * 4 * d * d + b * b * (d * d + d));
  // The targets are data, built once (as in compare_torch.py).
  const Tensor<float> targets = align::alignment_targets<float>(data, batch);
  return training_step(
      model.parameters(), [&] { return cross_entropy(model.forward(patches, ids, false).scores, targets); },
      2 * patch_embedding + 3 * rest, repeats);
}

// One step of the caption task's default model (docs/caption-task.md) through train.cpp's
// train_step: zero_grad, forward and loss, backward, AdamW (lr 2e-3, weight decay 0.01) and
// the schedule, on one fixed batch of 32 random pictures (B,3,32,32) in [0,1) and random
// captions of 4, 9 and 14 words in turn (the longest sets L = 15).
Measurement caption_case(int repeats) {
  Generator gen(0);
  caption::CaptionModel<float> model(caption::ModelConfig{}, gen);
  std::vector<std::vector<std::size_t>> captions(32);
  for (std::size_t i = 0; i < captions.size(); ++i)
    for (std::size_t k = 0; k < 4 + 5 * (i % 3); ++k) captions[i].push_back(caption::kAnd + gen.below(15));
  const caption::TrainBatch<float> batch{rand<float>({32, 3, 32, 32}, gen), caption::token_batch(captions)};
  const caption::TrainOptions defaults;
  AdamW<float> optimizer(model.parameters(),
                         AdamWOptions().set_lr(defaults.lr).set_weight_decay(defaults.weight_decay));
  LRScheduler<float> scheduler(optimizer, common::warmup_cosine(defaults.steps, defaults.warmup_steps()));
  std::size_t step = 0;
  return {
      median_ms([&] { caption::train_step(model, optimizer, scheduler, batch, ++step); }, repeats), std::nullopt, {}};
}

// One step of the VQA task's default model (docs/vqa-task.md; LSTM question encoder) as
// vqa's train.cpp does it: zero_grad, forward and cross-entropy, backward, AdamW (lr 2e-3,
// weight decay 0.01) and the warm-up cosine schedule, on one fixed batch of 64 random
// pictures (B,3,32,32) in [0,1), random questions of 4 to 10 words and answers b % 20.
// extra "parameters": the model's size, which compare_torch.py checks against its twin's.
Measurement vqa_case(int repeats) {
  Generator gen(0);
  vqa::VqaModel<float> model(vqa::ModelConfig{}, gen);
  std::vector<std::vector<std::size_t>> questions(64);
  std::vector<std::size_t> answers;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    for (std::size_t k = 0; k < 4 + i % 7; ++k) questions[i].push_back(1 + gen.below(vqa::kWordCount - 1));
    answers.push_back(i % vqa::kAnswerCount);
  }
  const Tensor<float> images = rand<float>({64, 3, 32, 32}, gen);
  const vqa::QuestionBatch batch = vqa::question_batch(questions);
  const vqa::TrainOptions defaults;
  AdamW<float> optimizer(model.parameters(),
                         AdamWOptions().set_lr(defaults.lr).set_weight_decay(defaults.weight_decay));
  LRScheduler<float> scheduler(optimizer, common::warmup_cosine(defaults.steps, defaults.warmup_steps()));
  const auto step = [&] {
    optimizer.zero_grad();
    Tensor<float> loss = model.loss(images, batch, answers);
    loss.item();  // train_step reads the loss
    loss.backward();
    optimizer.step();
    scheduler.step();
  };
  Measurement m{median_ms(step, repeats), std::nullopt, {}};
  m.extra["parameters"] = double(model.parameter_count());
  return m;
}

std::vector<Case> all_cases() {
  return {
      {"matmul_256", "float (256,256) x (256,256) through xtgrad::matmul, forward", 200,
       [](int r) { return matmul_case(256, r); }},
      {"ref_sgemm_256",
       "raw cblas_sgemm of the same size, preallocated output, OpenBLAS on one thread at any --threads", 200,
       [](int r) { return sgemm_case(256, r); }},
      {"attn_small", "MultiHeadCrossAttention training step: B 32, Lq 16, Lk 64, width 128, 4 heads", 50,
       [](int r) { return mha_case(32, 16, 64, 128, 4, r); }},
      {"attn_seed", "the seed's CrossAttention training step: B 2, 4x128 queries, 6x256 keys/values, out 512", 200,
       [](int r) { return seed_case(r); }},
      {"attn_large", "MultiHeadCrossAttention training step: B 16, Lq 128, Lk 256, width 512, 8 heads", 10,
       [](int r) { return mha_case(16, 128, 256, 512, 8, r); }},
      {"overhead_1000_ops", "1,000 elementwise ops on 8 elements, forward and backward", 200,
       [](int r) { return overhead_case(r); }},
      {"align_step", "one training step of the toy task's default model, batch 32, Adam", 50,
       [](int r) { return align_case(r); }},
      {"caption_step", "one training step of the caption task's default model, batch 32, AdamW", 20,
       [](int r) { return caption_case(r); }},
      {"vqa_step", "one training step of the VQA task's default model (LSTM questions), batch 64, AdamW", 20,
       [](int r) { return vqa_case(r); }},
      {"conv_small", "Conv2d 3->32 on 32x32, ReLU, Conv2d 32->64 stride 2, batch 32, training step", 20,
       [](int r) { return conv_case(r); }},
      {"lstm_small", "LSTM training step: batch 32, sequence 16, input 64, hidden 128", 20,
       [](int r) { return lstm_case(r); }},
      {"decoder_layer", "TransformerDecoderLayer step: batch 32, 16 causal tokens, memory 16, width 128, 4 heads", 20,
       [](int r) { return decoder_case(r); }},
      {"decode_16", "greedy decoding of 16 tokens with the key/value cache (batch 8, width 128)", 20,
       [](int r) { return decode_case(true, r); }},
      {"decode_16_recompute", "the same decoding, recomputing the whole prefix at every step", 20,
       [](int r) { return decode_case(false, r); }},
  };
}

[[noreturn]] void usage(const std::string& error) {
  std::cerr << "xtgrad-bench: " << error << "\n"
            << "usage: xtgrad-bench [--case NAME] [--threads N] [--repeats N]\n"
            << "       xtgrad-bench --machine   (the CPU, BLAS and peak line only)\ncases:\n";
  for (const auto& c : all_cases()) std::cerr << "  " << c.name << "  " << c.description << "\n";
  std::exit(2);
}

int parse_positive(const std::string& flag, const std::string& value) {
  try {
    std::size_t used = 0;
    const int v = std::stoi(value, &used);
    if (used == value.size() && v > 0) return v;
  } catch (const std::exception&) {}
  usage(flag + " needs a positive integer, got '" + value + "'");
}

// {"machine": ...}: the CPU, the BLAS kernels in use and who chose them, the peak of one
// thread and of two at once (about 2x on two cores, 1x on two hyperthreads of one), and
// which logical CPUs share CPU 0's core.
PeakResult print_machine() {
  const BackendInfo info = backend_info();
  const PeakResult peak = fma_peak(), two = fma_peak(2);
  std::printf(
      "{\"machine\": {\"cpu\": \"%s\", \"blas\": \"%s\", \"blas_core\": \"%s\", \"core_chosen_by\": \"%s\", "
      "\"narrow_gemm\": %s, \"fma_peak_gflops_1core\": %.1f, \"fma_peak_gflops_2threads\": %.1f, \"peak_isa\": "
      "\"%s\", \"cpu0_core_siblings\": \"%s\"}}\n",
      info.cpu.c_str(), info.blas.c_str(), info.blas_core.c_str(), info.core_chosen_by.c_str(),
      info.narrow_gemm ? "true" : "false", peak.gflops, two.gflops, peak.isa, cpu0_core_siblings().c_str());
  std::fflush(stdout);
  return peak;
}

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  int threads = 1, repeats = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") usage("help");
    if (arg == "--machine" && argc == 2) {
      print_machine();
      return 0;
    }
    if (i + 1 >= argc) usage("unknown flag or missing value: " + arg);
    const std::string value = argv[++i];
    if (arg == "--case")
      only = value;
    else if (arg == "--threads")
      threads = parse_positive(arg, value);
    else if (arg == "--repeats")
      repeats = parse_positive(arg, value);
    else
      usage("unknown flag: " + arg);
  }
  set_num_threads(threads);
  reuse_freed_memory();

  const auto cases = all_cases();
  if (!only.empty() && std::none_of(cases.begin(), cases.end(), [&](const Case& c) { return c.name == only; }))
    usage("unknown case: " + only);
  const PeakResult peak = print_machine();
  for (const auto& c : cases) {
    if (!only.empty() && c.name != only) continue;
    const int n = repeats ? repeats : c.repeats;
    const Measurement m = c.run(n);
    std::printf("{\"case\": \"%s\", \"ms\": %.4f", c.name.c_str(), m.ms);
    if (m.gflops) std::printf(", \"gflops\": %.2f", *m.gflops);
    if (m.gflops && peak.gflops > 0) std::printf(", \"of_peak\": %.3f", *m.gflops / (threads * peak.gflops));
    for (const auto& [key, value] : m.extra) std::printf(", \"%s\": %.4f", key.c_str(), value);
    std::printf(", \"threads\": %d, \"repeats\": %d}\n", threads, n);
    std::fflush(stdout);
  }
  return 0;
}
