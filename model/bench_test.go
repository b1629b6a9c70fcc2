package model

import (
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/moe"
	"github.com/gradlab/gradlab/solvers"
)

// benchConfigs are the 2-layer d = 128 byte-level decoders of the benchmarks (context 64): dense MHA +
// SwiGLU (d_ff 384), and MLA (d_c 64, d_h^R 16) + MoE with 8 experts of d_ff 192, top-2 (the same active
// FFN size), softmax router, aux-loss-free balancing.
func benchConfigs() []struct {
	name string
	cfg  Config
} {
	dense := Config{Dim: 128, Layers: 2, Heads: 4, Context: 64, Seed: 1}
	mla := dense
	mla.Attention, mla.MLA = MLA, MLADims{KVRank: 64, RoPEDim: 16}
	mla.FFN, mla.MoE = MoE, moe.Config{Hidden: 192, Experts: 8, TopK: 2}
	return []struct {
		name string
		cfg  Config
	}{{"MHA+SwiGLU", dense}, {"MLA+MoE", mla}}
}

// BenchmarkTrainStep times one full training step — bind a batch, forward, backward, gradient norm, AdamW,
// MoE bias update — of the 2-layer d = 128 decoder at batch 16 × context 64 (1024 tokens), float32, and
// reports tokens/s. The "gonum-gemm" variant runs on gonum's stock BLAS instead of UseFastGemm's.
func BenchmarkTrainStep(b *testing.B) {
	run := func(b *testing.B, cfg Config) {
		const B = 16
		m, err := New(cfg, B)
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		opt, err := solvers.NewAdamW(solvers.WithLR(1e-3))
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewSource(1))
		in, tg := randBatch(rng, m.Tokens(), 256)
		step := func() {
			if err := m.SetBatch(in, tg); err != nil {
				b.Fatal(err)
			}
			if _, err := m.Grad(); err != nil {
				b.Fatal(err)
			}
			if _, err := m.GradNorm(); err != nil {
				b.Fatal(err)
			}
			if err := opt.Step(m.ValueGrads()); err != nil {
				b.Fatal(err)
			}
			if err := m.UpdateBias(); err != nil {
				b.Fatal(err)
			}
		}
		step() // warm-up: allocates the solver state and the machines' registers
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			step()
		}
		b.ReportMetric(float64(b.N*m.Tokens())/b.Elapsed().Seconds(), "tokens/s")
		total, active := m.ParamCount()
		b.ReportMetric(float64(total), "params")
		b.ReportMetric(float64(active), "active")
	}
	for _, c := range benchConfigs() {
		b.Run(c.name, func(b *testing.B) { run(b, c.cfg) })
	}
	b.Run("MHA+SwiGLU/gonum-gemm", func(b *testing.B) {
		prev := tensor.WhichBLAS()
		tensor.Use(gonum.Implementation{})
		defer tensor.Use(prev)
		run(b, benchConfigs()[0].cfg)
	})
}

// BenchmarkGenerate times greedy generation of 256 tokens after a 16-token prompt with the KV-cached
// decoder (float32) and reports generated tokens/s.
func BenchmarkGenerate(b *testing.B) {
	for _, c := range benchConfigs() {
		b.Run(c.name, func(b *testing.B) {
			m, err := New(c.cfg, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			prompt := []int{'p', 'a', 'c', 'k', 'a', 'g', 'e', ' ', 'm', 'a', 'i', 'n', '\n', '\n', 'f', 'u'}
			const n = 256
			var g *Generation
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if g, err = m.Generate(prompt, n, SampleConfig{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*(n+len(prompt)))/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(g.CacheBytes)/float64(n+len(prompt)-1), "cacheB/token")
		})
	}
}
