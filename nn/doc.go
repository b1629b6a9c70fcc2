// Package nn holds the building blocks of a modern decoder as Gorgonia graph nodes, for float32 and
// float64 graphs:
//
//   - seeded initialisers (Normal, Uniform, XavierUniform/XavierNormal, KaimingUniform/KaimingNormal,
//     Zeros, Ones) drawing from an explicit *rand.Rand, and a Builder that creates uniquely named
//     parameter nodes from them (Gorgonia's own initialisers seed from the clock);
//   - Linear (y = x·W + b with W stored (in, out), Gorgonia's layout) and Embedding (a ByIndices gather);
//   - RMSNorm (Zhang & Sennrich, "Root Mean Square Layer Normalization", 2019) as one fused op;
//   - rotary position embeddings (Su et al., "RoFormer: Enhanced Transformer with Rotary Position
//     Embedding", 2021) over a precomputed table, interleaved or rotate-half pairing, with position offsets;
//   - SiLU and the SwiGLU feed-forward block (Shazeer, "GLU Variants Improve Transformer", 2020);
//   - a numerically stable cross-entropy over integer targets;
//   - Reshape, a copying reshape (see below).
//
// The custom ops implement gorgonia.Op, SDOp (for the TapeMachine, the recommended machine) and ADOp (for
// the LispMachine), put every parameter into WriteHash, check the register UsePreallocDo receives, and
// have float64 finite-difference gradient tests. Parameter names follow PyTorch's "<layer>.weight" /
// "<layer>.bias" convention so that solver routing rules (solvers.MatchNamePrefix) can select them.
//
// A Gorgonia v0.9.18 trap found while testing this package: gorgonia.Reshape returns a view of its input,
// and an elementwise op (Add, Sub, HadamardProd, HadamardDiv, the Broadcast* ops) whose left operand is
// that view may run in place and overwrite the input, even a parameter or a node still needed by the
// backward pass, giving corrupted weights and wrong gradients without an error. Use nn.Reshape (a copy)
// there (in our tests a view on the right-hand side was left alone, but nothing guarantees it). The
// layers here only feed reshaped nodes to matrix products and to this package's ops, which never write
// their inputs.
package nn
