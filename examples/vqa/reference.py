#!/usr/bin/python3
"""The VQA task's default model (examples/vqa/model.hpp, docs/vqa-task.md) in PyTorch.

bench/compare_torch.py times VqaModel below against xtgrad-bench's vqa_step; the two must
have the same parameter count (compare_torch.py checks it). The same architecture, sizes
and parameter names; not a replay of xtgrad's training (no weights are loaded).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

WORDS, PAD, ANSWERS, GRID = 32, 0, 20, 4


class VqaModel(nn.Module):
    """images (B,3,32,32) -> the caption task's CNN grid (B,16,d) + row and column
    embeddings; questions (B,L) -> Embedding(32,d) -> LSTM(d,d) stopping at each length;
    the states attend to one another and, by cross-attention, to the cells (a pre-norm
    TransformerDecoder without a causal mask, final LayerNorm); the mean over real tokens
    -> Linear(d,d), GELU, Linear(d,20)"""

    def __init__(self, d=64, heads=4, layers=2, ff=128):
        super().__init__()
        widths, blocks = [3, 16, 32, d], []
        for i in range(3):
            blocks += [nn.Conv2d(widths[i], widths[i + 1], 3, padding=1), nn.BatchNorm2d(widths[i + 1]), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.cnn = nn.Sequential(*blocks)
        self.row_position = nn.Parameter(torch.randn(GRID, 1, d))
        self.column_position = nn.Parameter(torch.randn(1, GRID, d))
        self.blind_memory = nn.Parameter(torch.randn(1, 1, d) * 0.02)  # unused with attention, as ours
        self.token_embed = nn.Embedding(WORDS, d, padding_idx=PAD)
        self.lstm = nn.LSTM(d, d, batch_first=True)
        layer = nn.TransformerDecoderLayer(d, heads, ff, dropout=0.0, activation="gelu", layer_norm_eps=1e-5,
                                           batch_first=True, norm_first=True)
        self.fusion = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d, eps=1e-5))
        self.hidden = nn.Linear(d, d)
        self.out = nn.Linear(d, ANSWERS)

    def forward(self, images, ids, lengths):
        """images (B,3,32,32), ids (B,L) padded with <pad>, lengths (B,) -> logits (B,20)"""
        b, length = ids.shape
        grid = self.cnn(images).permute(0, 2, 3, 1) + self.row_position + self.column_position  # (B,4,4,d)
        memory = grid.reshape(b, GRID * GRID, -1)  # (B,16,d)
        packed = nn.utils.rnn.pack_padded_sequence(self.token_embed(ids), lengths, batch_first=True,
                                                   enforce_sorted=False)
        states = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=length)[0]
        padding = torch.arange(length)[None, :] >= lengths[:, None]  # (B,L) True = <pad>
        fused = self.fusion(states, memory, tgt_key_padding_mask=padding)  # (B,L,d)
        pooled = (fused * (~padding)[..., None]).sum(1) / lengths[:, None]  # the mean over real tokens
        return self.out(F.gelu(self.hidden(pooled)))

    def loss(self, images, ids, lengths, answers):
        return F.cross_entropy(self.forward(images, ids, lengths), answers)


def question_batch(questions):
    """model.cpp's question_batch: lists of word ids -> ids (B,L) padded with <pad>, lengths (B,)"""
    length = max(len(q) for q in questions)
    ids = torch.full((len(questions), length), PAD, dtype=torch.long)
    for i, q in enumerate(questions):
        ids[i, :len(q)] = torch.tensor(q)
    return ids, torch.tensor([len(q) for q in questions])
