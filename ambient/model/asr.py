"""The recognizer: feature normalization -> streaming Conformer encoder -> CTC head.

Shapes: ``B`` batch, ``T`` feature frames (10 ms), ``T'`` encoder frames, ``V`` vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ambient.audio.features import frame_shift_seconds
from ambient.model.cache import EncoderCache
from ambient.model.conformer import ConformerEncoder
from ambient.model.dims import ModelDims
from ambient.model.tokenizer import CharTokenizer, Tokenizer

__all__ = ["AsrModel"]


class AsrModel(nn.Module):
    """Normalization statistics, encoder and CTC projection; one checkpoint holds all of it."""

    norm_mean: torch.Tensor
    norm_std: torch.Tensor

    def __init__(
        self,
        *,
        dims: ModelDims,
        tokenizer: Tokenizer | None = None,
        norm_mean: torch.Tensor | None = None,
        norm_std: torch.Tensor | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer: Tokenizer = tokenizer or CharTokenizer()
        if self.tokenizer.vocab_size != dims.vocab_size:
            raise ValueError(
                f"tokenizer has {self.tokenizer.vocab_size} units but dims.vocab_size is {dims.vocab_size}"
            )
        self.dims = dims
        self.meta: dict[str, Any] = dict(meta or {})
        self.register_buffer(
            "norm_mean",
            torch.zeros(dims.n_mels) if norm_mean is None else norm_mean.float().clone(),
        )
        self.register_buffer("norm_std", torch.ones(dims.n_mels) if norm_std is None else norm_std.float().clone())
        self.encoder = ConformerEncoder(dims=dims)
        self.head = nn.Linear(dims.d_model, dims.vocab_size)

    @property
    def frame_shift_s(self) -> float:
        """Seconds per encoder output frame (0.04 at 4x subsampling)."""
        return frame_shift_seconds(self.dims.subsampling)

    @property
    def name(self) -> str:
        """Model name from the metadata (falls back to ``ambient``)."""
        return str(self.meta.get("name", "ambient"))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames (CTC steps) for ``lengths (B,)`` feature frames."""
        return self.encoder.subsampling.output_lengths(lengths)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store global log-mel statistics ``mean (80,)`` and ``std (80,)``."""
        self.norm_mean.copy_(mean.float())  # type: ignore[operator]
        self.norm_std.copy_(std.float().clamp(min=1e-3))  # type: ignore[operator]

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """``(..., 80)`` raw log-mel -> normalized."""
        return (feats - self.norm_mean) / self.norm_std

    def forward(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        *,
        chunk_frames: int = 0,
        left_chunks: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats (B, T, 80)`` raw log-mel -> ``log_probs (B, T', V)``, ``out_lengths (B,)``."""
        h, out_len = self.encoder(self.normalize(feats), lengths, chunk_frames=chunk_frames, left_chunks=left_chunks)
        return F.log_softmax(self.head(h).float(), dim=-1), out_len

    def init_cache(self, *, chunk_frames: int, left_chunks: int, batch: int = 1) -> EncoderCache:
        """An empty streaming cache (see :class:`EncoderCache`)."""
        return self.encoder.init_cache(batch=batch, chunk_frames=chunk_frames, left_chunks=left_chunks)

    def forward_chunk(
        self, feats: torch.Tensor, cache: EncoderCache, *, final: bool = False
    ) -> tuple[torch.Tensor, EncoderCache]:
        """Streaming step: ``feats (B, t, 80)`` raw log-mel -> ``log_probs (B, n, V)`` and new cache."""
        h, cache = self.encoder.forward_chunk(self.normalize(feats), cache, final=final)
        return F.log_softmax(self.head(h).float(), dim=-1), cache

    def ctc_loss(
        self,
        log_probs: torch.Tensor,
        out_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Mean CTC loss per utterance; ``targets (B, S)`` padded ids, ``target_lengths (B,)``."""
        return F.ctc_loss(
            log_probs.transpose(0, 1).float(),
            targets,
            out_lengths,
            target_lengths,
            blank=self.tokenizer.blank_id,
            reduction="mean",
            zero_infinity=True,
        )
