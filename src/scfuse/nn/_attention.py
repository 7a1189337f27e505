"""Multi-head cell-to-cell attention restricted to graph neighbours (the one attention fusion block).

The published fusion models attend over all ``n`` cells at once (``n x n`` per head). Here each cell attends to
its graph neighbours only, given either as a boolean mask over the cells of a mini-batch (training) or as a padded
neighbour table over all cells (inference, processed in row chunks without gradients). Memory is
``O(n * neighbours * heads * dim)``.
"""

from __future__ import annotations

import torch
from torch import nn

#: from this many query rows on, the no-grad neighbour attention never holds the projected queries, keys and
#: values of all rows (``3 x rows x heads x head_dim`` floats: 6 GB at 1,000,000 cells for AttentionAE-sc's first
#: block); it attends in row chunks on the unprojected neighbours instead (the same function, other rounding)
LOW_MEMORY_MIN_ROWS = 200_000


class NeighborAttention(nn.Module):
    """Multi-head attention where queries come from one representation and keys/values from another.

    Parameters
    ----------
    dim
        Feature size of the query input and of the key/value input (the output has this size too).
    n_heads
        Number of heads.
    head_dim
        Per-head size. ``None`` gives "wide" heads of size ``dim`` (each head projects ``dim -> dim``).
    dropout
        Dropout on the projected queries (AttentionAE-sc) during training.
    qkv_bias
        Bias in the query/key/value projections.
    kv_dim
        Feature size of the key/value input when it differs from ``dim``.
    scale
        ``"split"`` divides queries and keys each by ``head_dim ** 0.25``; ``"standard"`` divides scores by
        ``sqrt(head_dim)`` (the same overall scale).
    """

    def __init__(
        self,
        dim: int,
        n_heads: int = 8,
        *,
        head_dim: int | None = None,
        dropout: float = 0.0,
        qkv_bias: bool = False,
        kv_dim: int | None = None,
        chunk_size: int = 4096,
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim if head_dim is None else head_dim
        inner = n_heads * self.head_dim
        kv_dim = dim if kv_dim is None else kv_dim
        self.q = nn.Linear(dim, inner, bias=qkv_bias)
        self.k = nn.Linear(kv_dim, inner, bias=qkv_bias)
        self.v = nn.Linear(kv_dim, inner, bias=qkv_bias)
        self.out = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)
        self.chunk_size = chunk_size
        self._scale = self.head_dim**-0.5

    def _project(self, query: torch.Tensor, key_value: torch.Tensor):
        h, e = self.n_heads, self.head_dim
        q = self.dropout(self.q(query)).view(-1, h, e)
        k = self.k(key_value).view(-1, h, e)
        v = self.v(key_value).view(-1, h, e)
        return q, k, v

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        neighbors: torch.Tensor | None = None,
        neighbor_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from each row of ``query`` to rows of ``key_value``.

        Give either ``mask`` (``n_q x n_kv`` boolean, True = may attend; ``None`` = all rows of the batch) or
        ``neighbors`` (``n_q x K`` row indices into ``key_value``) with ``neighbor_mask`` (``n_q x K`` boolean).
        Every query row must be allowed at least one key (include the cell itself).
        """
        if neighbors is not None and not torch.is_grad_enabled() and neighbors.shape[0] >= LOW_MEMORY_MIN_ROWS:
            return self._attend_in_chunks(query, key_value, neighbors, neighbor_mask)
        q, k, v = self._project(query, key_value)
        if neighbors is None:
            scores = torch.bmm(q.transpose(0, 1), k.permute(1, 2, 0)) * self._scale  # (h, n_q, n_kv)
            if mask is not None:
                scores = scores.masked_fill(~mask.unsqueeze(0), float("-inf"))
            attn = torch.softmax(scores, dim=-1)
            out = torch.bmm(attn, v.transpose(0, 1)).transpose(0, 1)  # (n_q, h, e)
        else:
            if neighbor_mask is None:
                neighbor_mask = torch.ones_like(neighbors, dtype=torch.bool)
            step = neighbors.shape[0] if torch.is_grad_enabled() else self.chunk_size
            outs = []
            for s in range(0, neighbors.shape[0], step):
                idx = neighbors[s : s + step]
                kn, vn = k[idx], v[idx]  # (c, K, h, e)
                sc = (q[s : s + step].unsqueeze(1) * kn).sum(-1) * self._scale  # (c, K, h)
                sc = sc.masked_fill(~neighbor_mask[s : s + step].unsqueeze(-1), float("-inf"))
                at = torch.softmax(sc, dim=1)
                outs.append((at.unsqueeze(-1) * vn).sum(1))
            out = torch.cat(outs, dim=0)
        return self.out(out.reshape(out.shape[0], -1))

    def _attend_in_chunks(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        neighbors: torch.Tensor,
        neighbor_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """The neighbour attention of :meth:`forward`, chunk by chunk, with memory O(rows x dim).

        A head's score ``q . (W_k x)`` is ``(W_k^T q) . x`` and its output ``sum_j a_j (W_v x_j + b_v)`` is
        ``W_v (sum_j a_j x_j) + b_v``, so keys and values are never projected; a key bias adds the same amount to
        every score of a query and cancels in the softmax.
        """
        h, e = self.n_heads, self.head_dim
        w_k = self.k.weight.view(h, e, -1)
        w_v = self.v.weight.view(h, e, -1)
        outs = []
        for s in range(0, neighbors.shape[0], self.chunk_size):
            idx = neighbors[s : s + self.chunk_size]
            xn = key_value[idx]  # (c, K, kv_dim)
            q = self.dropout(self.q(query[s : s + self.chunk_size])).view(-1, h, e)
            sc = torch.einsum("chd,ckd->ckh", torch.einsum("che,hed->chd", q, w_k), xn) * self._scale
            if neighbor_mask is not None:
                sc = sc.masked_fill(~neighbor_mask[s : s + self.chunk_size].unsqueeze(-1), float("-inf"))
            at = torch.softmax(sc, dim=1)
            out = torch.einsum("chd,hed->che", torch.einsum("ckh,ckd->chd", at, xn), w_v)
            if self.v.bias is not None:
                out = out + self.v.bias.view(h, e)
            outs.append(self.out(out.reshape(out.shape[0], -1)))
        return torch.cat(outs, dim=0)
