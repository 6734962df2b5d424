#include "model.hpp"

#include <algorithm>
#include <stdexcept>

#include "checkpoint_rules.hpp"
#include "flags.hpp"

namespace vqa {

using xtgrad::Tensor;

void ModelConfig::check() const {
  common::check_in_range("--dim", dim, 1, kMaxDim);
  common::check_in_range("--fusion-layers", fusion_layers, 1, kMaxLayers);
  common::check_in_range("--text-layers", text_layers, 1, kMaxLayers);
  common::check_in_range("--ff", ff, 1, 4 * kMaxDim);
  if (heads < 1 || dim % heads != 0)
    throw std::invalid_argument("--heads " + std::to_string(heads) + " must divide --dim " + std::to_string(dim));
  if (text_encoder != "lstm" && text_encoder != "transformer")
    throw std::invalid_argument("--text-encoder must be lstm or transformer, got '" + text_encoder + "'");
  if (image != "attention" && image != "blind" && image != "no-attention")
    throw std::invalid_argument("the image mode must be attention, blind or no-attention, got '" + image + "'");
  if (pool != "mean" && pool != "last") throw std::invalid_argument("--pool must be mean or last, got '" + pool + "'");
}

std::map<std::string, std::string> ModelConfig::to_metadata() const {
  return {{"dim", std::to_string(dim)},
          {"heads", std::to_string(heads)},
          {"fusion_layers", std::to_string(fusion_layers)},
          {"text_layers", std::to_string(text_layers)},
          {"ff", std::to_string(ff)},
          {"text_encoder", text_encoder},
          {"image", image},
          {"pool", pool}};
}

ModelConfig ModelConfig::from_metadata(const std::map<std::string, std::string>& metadata) {
  const auto get = [&](const char* key) { return common::config_text(metadata, key); };
  const auto count = [&](const char* key, std::size_t hi) { return common::config_count(metadata, key, hi); };
  ModelConfig c;
  c.dim = count("dim", kMaxDim);
  c.heads = count("heads", kMaxDim);
  c.fusion_layers = count("fusion_layers", kMaxLayers);
  c.text_layers = count("text_layers", kMaxLayers);
  c.ff = count("ff", 4 * kMaxDim);
  c.text_encoder = get("text_encoder");
  c.image = get("image");
  c.pool = get("pool");
  c.check();
  return c;
}

QuestionBatch question_batch(const std::vector<std::vector<std::size_t>>& questions) {
  QuestionBatch b;
  for (const auto& q : questions) {
    if (q.empty() || q.size() > kMaxQuestionWords)
      throw std::invalid_argument("question_batch: a question of " + std::to_string(q.size()) + " words (1 to " +
                                  std::to_string(kMaxQuestionWords) + ")");
    b.length = std::max(b.length, q.size());
  }
  const std::size_t n = questions.size(), L = b.length;
  b.ids.assign(n * L, kPad);
  b.padding = xt::ones<bool>({n, L});
  for (std::size_t i = 0; i < n; ++i) {
    std::copy(questions[i].begin(), questions[i].end(), b.ids.begin() + long(i * L));
    b.lengths.push_back(questions[i].size());
    for (std::size_t k = 0; k < questions[i].size(); ++k) b.padding(i, k) = false;
  }
  return b;
}

template <class T>
VqaModel<T>::VqaModel(const ModelConfig& c, xtgrad::Generator& gen)
    : xtgrad::Module<T>("VqaModel"), config((c.check(), c)), image_encoder(*this, c.dim, gen, /*position_std=*/1.0) {
  using namespace xtgrad;
  const std::size_t d = c.dim;
  blind_memory = this->register_parameter("blind_memory", randn<T>({1, 1, d}, gen, T(0), T(0.02)));
  token_embed = this->register_module("token_embed", std::make_shared<Embedding<T>>(kWordCount, d, kPad, gen));
  const auto layers = TransformerLayerOptions()
                          .set_dim_feedforward(c.ff)
                          .set_dropout(0.0)
                          .set_activation(Activation::gelu)
                          .set_batch_first(true)
                          .set_norm_first(true);
  if (c.text_encoder == "lstm") {
    lstm =
        this->register_module("lstm", std::make_shared<LSTM<T>>(d, d, RecurrentOptions().set_batch_first(true), gen));
  } else {
    token_position = this->register_parameter("token_position", randn<T>({kMaxQuestionWords, d}, gen, T(0), T(0.02)));
    text_encoder = this->register_module(
        "text_encoder", std::make_shared<TransformerEncoder<T>>(c.text_layers, d, c.heads, c.ff, 0.0, Activation::gelu,
                                                                1e-5, true, true, /*final_norm=*/true, gen));
  }
  fusion = this->register_module(
      "fusion", std::make_shared<TransformerDecoder<T>>(c.fusion_layers, d, c.heads, layers.dim_feedforward,
                                                        layers.dropout, layers.activation, layers.layer_norm_eps,
                                                        layers.batch_first, layers.norm_first,
                                                        /*final_norm=*/true, gen));
  hidden = this->register_module("hidden", std::make_shared<Linear<T>>(d, d, true, gen));
  out = this->register_module("out", std::make_shared<Linear<T>>(d, kAnswerCount, true, gen));
}

template <class T> Tensor<T> VqaModel<T>::encode_question(const QuestionBatch& q) {
  const std::size_t n = q.lengths.size();
  const Tensor<T> x = token_embed->forward(q.ids, {n, q.length});  // (B,L,d)
  if (lstm) return lstm->forward(x, std::nullopt, q.lengths).output;
  const Tensor<T> placed = x + xtgrad::narrow(token_position, 0, 0, q.length);
  return text_encoder->forward(placed, std::nullopt, xtgrad::padding_mask(q.padding));
}

template <class T> Tensor<T> VqaModel<T>::pool(const Tensor<T>& states, const QuestionBatch& q) const {
  const std::size_t n = q.lengths.size(), L = q.length;
  if (config.pool == "last") {  // row b * L + length - 1 of the (B*L, d) states
    std::vector<std::size_t> rows;
    for (std::size_t b = 0; b < n; ++b) rows.push_back(b * L + q.lengths[b] - 1);
    return xtgrad::index_select(xtgrad::reshape(states, {long(n * L), long(config.dim)}), 0, rows);
  }
  xtgrad::Array<T> weights = xt::zeros<T>({n, L, std::size_t(1)});  // 1 / length on the real tokens
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t k = 0; k < q.lengths[b]; ++k) weights(b, k, 0) = T(1) / T(q.lengths[b]);
  return xtgrad::sum(states * Tensor<T>(std::move(weights)), {1});
}

template <class T>
std::pair<Tensor<T>, Tensor<T>> VqaModel<T>::fusion_inputs(const Tensor<T>& images, const QuestionBatch& q) {
  using namespace xtgrad;
  const long b = long(images.shape()[0]), d = long(config.dim);
  Tensor<T> states = encode_question(q);  // (B,L,d)
  Tensor<T> memory = expand(blind_memory, {b, 1, d});
  if (config.image != "blind") {
    const Tensor<T> cells = image_encoder.forward(images);  // (B,16,d)
    if (config.image == "attention")
      memory = cells;
    else
      states = states + mean(cells, {1}, /*keepdims=*/true);  // (B,1,d) added to every state
  }
  return {states, memory};
}

template <class T> Tensor<T> VqaModel<T>::forward(const Tensor<T>& images, const QuestionBatch& q) {
  using namespace xtgrad;
  const auto [states, memory] = fusion_inputs(images, q);
  const Tensor<T> fused = fusion->forward(states, memory, std::nullopt, std::nullopt, padding_mask(q.padding));
  return out->forward(gelu(hidden->forward(pool(fused, q))));
}

template <class T>
std::vector<Tensor<T>> VqaModel<T>::cross_attention(const Tensor<T>& images, const QuestionBatch& q) {
  using namespace xtgrad;
  if (config.image != "attention")
    throw std::invalid_argument("VqaModel.cross_attention: a model with the image mode '" + config.image +
                                "' has no cross-attention over the picture");
  std::vector<Tensor<T>> weights;
  for (auto& layer : fusion->layers) layer->keep_memory_weights = true;
  forward(images, q);
  for (auto& layer : fusion->layers) {
    layer->keep_memory_weights = false;
    weights.push_back(std::move(layer->memory_weights));
  }
  return weights;
}

template <class T>
Tensor<T> VqaModel<T>::loss(const Tensor<T>& images, const QuestionBatch& q, const std::vector<std::size_t>& answers) {
  return xtgrad::cross_entropy(forward(images, q), answers);
}

template class VqaModel<float>;
template class VqaModel<double>;

}  // namespace vqa
