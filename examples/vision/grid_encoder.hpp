// The image side shared by xtgrad-caption and xtgrad-vqa (docs/caption-task.md, "The
// default model"): a batch of toy pictures as a tensor, and the encoder that makes a grid of
// feature vectors of it, one per cell of the pictures' 4x4 grid:
//   images (B,3,32,32) -> 3 x [Conv2d 3x3, BatchNorm2d, ReLU, MaxPool2d 2] -> (B,d,4,4)
//                      -> the 16 cells (B,16,d) + a learned row and column embedding
#pragma once

#include <memory>
#include <vector>

#include "scenes.hpp"
#include "xtgrad/nn.hpp"

namespace vision {

// A batch of pictures as (B,3,32,32), channels first, rendered from their scenes.
template <class T> xtgrad::Tensor<T> image_batch(const std::vector<scenes::Scene>& scenes);

// Not a module of its own: its parts are registered in the model that owns it, as "cnn",
// "row_position" and "column_position" (the names of the caption model's checkpoints),
// drawn from gen in that order. The position embeddings start N(0, position_std): the
// caption model's 0.02; the VQA model's 1 (nn.Embedding's), where positions must be read
// out of a cell's value from the first steps on.
template <class T> struct GridEncoder {
  GridEncoder(xtgrad::Module<T>& owner, std::size_t dim, xtgrad::Generator& gen, double position_std = 0.02);
  // images (B,3,32,32) -> cells (B,16,d), row-major over the grid, position included
  xtgrad::Tensor<T> forward(const xtgrad::Tensor<T>& images) const;

  const std::size_t dim;
  std::shared_ptr<xtgrad::Sequential<T>> cnn;
  xtgrad::Tensor<T> row_position, column_position;  // (4,1,d), (1,4,d)
};

}  // namespace vision
