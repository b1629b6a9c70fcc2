// Package model is a decoder-only language model assembled from gradlab's graph layers (nn, attention,
// moe), with a training loop helper and KV-cached generation.
//
// Model (REFERENCE §2.6) is one Gorgonia graph for a fixed batch size and context:
//
//	x = E[ids];  per block: h = x + Attn(RMSNorm(x));  x = h + FFN(RMSNorm(h))
//	logits = RMSNorm(x)·Eᵀ (tied) or ·W_head;  cost = mean next-token cross-entropy + MoE auxiliary losses
//
// where Attn is MHA, GQA or MLA (attention.MHA / attention.MLA) and FFN is SwiGLU (nn.SwiGLU) or a
// Mixture-of-Experts layer (moe.Layer), all chosen by Config. Parameters are created by a seeded
// nn.Builder and named "embed.weight", "blocks.<i>.attn_norm.weight", "blocks.<i>.attn.<wq|wk|wv|wo|wq_a|
// q_norm|wq_b|wkv_a|kv_norm|wkv_b>.weight", "blocks.<i>.ffn_norm.weight", "blocks.<i>.ffn.<w1|w2|w3>.weight"
// (SwiGLU) or "blocks.<i>.ffn.gate.weight", "blocks.<i>.ffn.experts.<w1|w2|w3>.weight",
// "blocks.<i>.ffn.shared_experts.<w1|w2|w3>.weight" (MoE), "norm.weight" and "head.weight", so that
// solvers.NewMuonWithAdamW's default routing sends the embedding and head to AdamW, the hidden 2-D
// matrices to Muon and the gains (vectors) to AdamW. (The stacked 3-D expert tensors are not 2-D: the
// default routing gives them to AdamW.)
//
// The model compiles two tape machines over its graph: a training machine (forward and backward, gradients
// bound to the parameters; Model.Grad) and a forward-only program (gorgonia.CompileFunction; Model.Loss,
// Model.Evaluate, Model.Logits) that sees in-place weight updates. Batches are bound with gorgonia.Let on
// the two Int input nodes (Model.SetBatch, Model.SetDataBatch); targets of −1 are ignored.
//
// Train runs a solver (any gorgonia.Solver, e.g. solvers.NewAdamW or solvers.NewMuonWithAdamW) over batches
// from a data.Sampler with an optional learning-rate schedule, calling the MoE bias update after each step,
// and returns a History of train and validation loss, gradient norm and tokens/s.
//
// Decoder runs the trained model one token at a time outside the graph, with the attention packages' KV
// caches (MHACache, or MLA's absorbed MLACache) and the FFNs (SwiGLU, MoE routing) in plain Go and gonum
// BLAS; its logits equal the graph's full forward pass (max difference about 1e-15 in float64 in the
// tests). Model.Generate decodes greedily or samples with a temperature (and optional top-k) from a seeded
// source.
//
// Performance. Gorgonia computes every weight gradient as xᵀ·dy, gonum v0.11's Trans × NoTrans matrix
// product, which is about 5× slower than its other forms; UseFastGemm installs (process-wide, via
// tensor.Use) a BLAS that transposes A first, which makes a training step about 2.8× faster. Call it once
// before training. Measured on the shared 2-core test machine (BenchmarkTrainStep, float32, batch 16 ×
// context 64, AdamW; noisy, other jobs running): the 2-layer d = 128 MHA + SwiGLU decoder (0.49 M
// parameters) about 3,800 tokens/s (270 ms a step; 1,350 tokens/s with gonum's stock kernel); MLA (d_c 64,
// d_h^R 16) + MoE (8 experts of d_ff 192, top-2; 1.38 M parameters, 0.50 M active) about 1,550 tokens/s.
// Greedy generation with the caches (BenchmarkGenerate): about 3,400 tokens/s (MHA, 2,048 cached bytes
// per token) and 2,600 tokens/s (MLA + MoE, 640 bytes per token).
//
// Tests: a float64 finite-difference check of the whole model's gradient (sampled entries of every
// parameter) for MHA, GQA with tied embeddings, MLA, and MoE (softmax with shared expert, and sigmoid with
// groups and route scale, both with balance and z-losses); cached decoding = full forward for the same
// five models (with non-zero balancing biases); greedy generation = argmax of the full recomputation;
// seeded sampling reproducible; and TestTrainGoSource, which trains the 2-layer d = 128 decoder on 3 MB of
// the Go standard library's source until its validation loss is well below the corpus's unigram
// cross-entropy (skipped with -short).
package model
