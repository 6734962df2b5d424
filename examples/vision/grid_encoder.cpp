#include "grid_encoder.hpp"

namespace vision {

using xtgrad::Tensor;

template <class T> Tensor<T> image_batch(const std::vector<scenes::Scene>& batch) {
  using scenes::kChannels;
  constexpr std::size_t kPixels = scenes::kImageSize * scenes::kImageSize;
  xtgrad::Array<T> out(xtgrad::Shape{batch.size(), kChannels, scenes::kImageSize, scenes::kImageSize});
  std::vector<float> image(scenes::kImageValues);
  for (std::size_t b = 0; b < batch.size(); ++b) {
    scenes::render_image(batch[b], image.data());  // (y, x, channel) -> (channel, y, x)
    T* dst = out.data() + b * kChannels * kPixels;
    for (std::size_t p = 0; p < kPixels; ++p)
      for (std::size_t c = 0; c < kChannels; ++c) dst[c * kPixels + p] = T(image[p * kChannels + c]);
  }
  return Tensor<T>(std::move(out));
}

template <class T>
GridEncoder<T>::GridEncoder(xtgrad::Module<T>& owner, std::size_t d, xtgrad::Generator& gen, double position_std)
    : dim(d) {
  using namespace xtgrad;
  cnn = owner.register_module("cnn", std::make_shared<Sequential<T>>());
  const std::size_t widths[] = {scenes::kChannels, 16, 32, d};
  for (std::size_t i = 0; i < 3; ++i) {
    cnn->push_back(std::make_shared<Conv2d<T>>(widths[i], widths[i + 1], 3, 1, 1, 1, 1, true, gen));
    cnn->push_back(std::make_shared<BatchNorm2d<T>>(widths[i + 1]));
    cnn->push_back(std::make_shared<ReLU<T>>());
    cnn->push_back(std::make_shared<MaxPool2d<T>>(2));
  }
  row_position = owner.register_parameter("row_position", randn<T>({scenes::kGrid, 1, d}, gen, T(0), T(position_std)));
  column_position =
      owner.register_parameter("column_position", randn<T>({1, scenes::kGrid, d}, gen, T(0), T(position_std)));
}

template <class T> Tensor<T> GridEncoder<T>::forward(const Tensor<T>& images) const {
  using namespace xtgrad;
  const long b = long(images.shape()[0]), d = long(dim);
  // (B,d,4,4) -> (B,4,4,d) + the row's and the column's embeddings -> (B,16,d)
  const Tensor<T> grid = permute(cnn->forward(images), {0, 2, 3, 1}) + row_position + column_position;
  return reshape(grid, {b, long(scenes::kCells), d});
}

template struct GridEncoder<float>;
template struct GridEncoder<double>;
template Tensor<float> image_batch(const std::vector<scenes::Scene>&);
template Tensor<double> image_batch(const std::vector<scenes::Scene>&);

}  // namespace vision
