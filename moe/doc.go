// Package moe is a Mixture-of-Experts feed-forward layer as Gorgonia graph nodes, float32 and float64,
// following deepseek-ai/DeepSeek-V3 inference/model.py (Gate, Expert, MoE) and the papers it implements:
// Shazeer et al., "Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts Layer" (2017);
// Fedus et al., "Switch Transformers" (2021); Zoph et al., "ST-MoE" (2022); Dai et al., "DeepSeekMoE"
// (2024); DeepSeek-V2 (arXiv 2405.04434) and DeepSeek-V3 (arXiv 2412.19437); Jiang et al., "Mixtral of
// Experts" (2024); Wang et al., "Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts" (2024).
//
// What it holds:
//
//   - Layer: router logits z = u·E; a softmax router (Switch, Mixtral, DeepSeek-V2) or a sigmoid router
//     (DeepSeek-V3: selected gates renormalised, ×route_scale); top-k selection from s + b, where b is the
//     auxiliary-loss-free balancing bias used only for selection (the gates come from the unbiased scores);
//     optional group-limited routing; optional shared experts (one SwiGLU of width N_s·d_ff); SwiGLU routed
//     experts stacked in (N_r, d, d_ff) / (N_r, d_ff, d) tensors; an optional capacity limit.
//   - TopK and Capacity: non-differentiable custom ops producing 0/1 masks (SDOp with DiffWRT false), their
//     parameters in WriteHash.
//   - Experts: the sparse expert computation as one custom op with a hand-written backward pass. Each
//     token runs only its k experts: the op reads the dispatch mask at run time, gathers the tokens of each
//     expert into a contiguous block, and runs that expert's three matrix products through BLAS (gonum's
//     NoTrans×Trans form, its fastest kernel); the backward pass reuses the forward pass's activations when a
//     fingerprint of the inputs matches, and recomputes them otherwise. This was chosen over REFERENCE
//     §2.8's static-shape dispatch (ByIndices into (E, C, d), BatchedMatMul, one-hot combine) because that
//     needs the routing before the graph runs, and with no token dropped (C = T) it computes every expert
//     on every token; the op's cost is that of k experts per token at any capacity.
//   - Layer.ForwardDense: the dense masked reference (every expert on every token, gated), the test oracle.
//   - AuxLoss (α·N_r·Σ f_i P_i, Switch/DeepSeek form), ZLoss (ST-MoE's β·mean(logsumexp z)², with this
//     package's own logsumexp op: Gorgonia v0.9.18's LogSumExp is wrong on matrices), and
//     Layer.UpdateBias, DeepSeek-V3's post-step bias update b_i ← b_i + γ·sign(mean load − load_i).
//   - Layer.Stats: tokens per expert, their coefficient of variation and max violation, the dropped fraction,
//     active and total parameters.
//
// Equivalences checked by the tests (float64): Forward equals ForwardDense in values and in every gradient
// (max relative difference below 1e-10) for softmax and sigmoid routers, with and without shared experts,
// with groups, route scale and a capacity limit; a whole block passes a finite-difference gradient check;
// uniform routing gives L_aux = α exactly; UpdateBias more than halves the load's coefficient of variation on
// a skewed router.
//
// Performance (BenchmarkMoEPaired: 512 tokens, d = 128, 8 experts of d_ff = 256, top-2, float32, forward +
// backward, against an nn.SwiGLU of d_ff = 512, the same active size): the MoE layer takes about 1.05–1.1×
// the dense layer's time per token, router included; the dense masked reference takes about 3–4×.
package moe
