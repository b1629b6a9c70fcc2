// Package attention holds the attention layers of a modern decoder as Gorgonia graph nodes (float32 and
// float64), with KV caches for incremental decoding outside the graph:
//
//   - MHA: causal multi-head self-attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017) with
//     rotary position embeddings on queries and keys (Su et al., "RoFormer: Enhanced Transformer with Rotary
//     Position Embedding", 2021), softmax scale 1/√d_h, a constant causal mask, an output projection, and
//     optional grouped-query attention (Ainslie et al., "GQA: Training Generalized Multi-Query Transformer
//     Models from Multi-Head Checkpoints", EMNLP 2023; KVHeads = 1 is Shazeer's multi-query attention).
//   - MLA: multi-head latent attention as DeepSeek-V2 defines it (DeepSeek-AI, "DeepSeek-V2: A Strong,
//     Economical, and Efficient Mixture-of-Experts Language Model", arXiv 2405.04434, §2.1; unchanged in the
//     "DeepSeek-V3 Technical Report", arXiv 2412.19437; reference code deepseek-ai/DeepSeek-V3
//     inference/model.py, class MLA): low-rank joint key-value compression to a normalised latent c_KV of
//     size d_c, optional low-rank query compression (d′_c, with its norm), the decoupled RoPE key of size
//     d_h^R shared by all heads, per-head RoPE queries, softmax scale 1/√(d_h + d_h^R). MLA.Forward is the
//     training path (explicit per-head keys and values, a graph Gorgonia differentiates); MLACache is the
//     absorbed inference path (W_UK folded into the query, W_UV into the output, only c_KV and k^R cached).
//   - Caches (MHACache, MLACache, both Cache[T]): one token at a time, plain Go and gonum BLAS, reading the
//     trained parameters' values; they report their values per token (MHA 2·n_h·d_h, GQA 2·n_g·d_h, MLA
//     d_c + d_h^R) and bytes, and give exactly what the graph's full forward gives, row by row.
//
// Shapes. Forward takes x of shape (B, T, d), a batch of B sequences, or (T, d), one sequence, with T ≥ 2
// (decode single tokens with a cache), and returns the same shape; row t is at position t and attends to rows
// 0..t. The input is the block's normalised hidden state: a pre-norm decoder block is
// h = x + Attn(RMSNorm(x)). Inside, heads are folded into BatchedMatMul's leading axis, (B·n_h, T, d_h); the
// token-major ↔ head-major moves are one small copying op (with its adjoint as gradient) instead of
// Gorgonia's Reshape/Transpose/Slice views, which v0.9.18 lets elementwise ops overwrite in place (see
// nn.Reshape). Weights are stored (in, out), y = x·W, as in package nn.
//
// Parameters are created through an nn.Builder (seeded, uniquely named) under a prefix: MHA's
// "<prefix>.wq.weight", ".wk", ".wv", ".wo"; MLA's DeepSeek names "<prefix>.wq.weight" or ".wq_a", ".q_norm",
// ".wq_b", then ".wkv_a", ".kv_norm", ".wkv_b", ".wo".
//
// The causal mask is a graph constant holding 0 and MaskValue (−1e9, representable in float32): masked keys
// get probability exactly 0, so an output never depends on later tokens (checked bit for bit in the tests).
//
// Tests: float64 central-difference gradient checks of whole pre-norm decoder blocks (attention + SwiGLU,
// every parameter and the input) for MHA, GQA, MLA with and without query compression; cached decoding
// against full recomputation token by token (which for MLA is also absorbed path = training path); the
// causal mask; batch = single sequences; float32; cache sizes.
package attention
