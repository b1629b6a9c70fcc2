package solvers

import (
	"fmt"
	"math/rand"
	"testing"

	G "gorgonia.org/gorgonia"
)

// benchParam returns a float32 parameter of n elements with a random gradient.
func benchParam(name string, n int) *Param {
	rng := rand.New(rand.NewSource(1))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	return NewParamFrom(name, []int{n}, w)
}

func refillGrad(p *Param, v float32) {
	g := p.GradTensor().Float32s()
	for i := range g {
		g[i] = v
	}
}

// BenchmarkStep compares, on the same float32 tensors, gradlab's AdamW, Lion and AdaBelief steps,
// Gorgonia's own AdamSolver,
// and the memory-bandwidth floor: a plain copy of the 28 bytes per parameter an AdamW step moves (it reads
// p, g, m, v and writes p, m, v). Gradients are refilled outside the timer where the solver zeroes them.
func BenchmarkStep(b *testing.B) {
	for _, n := range []int{1 << 20, 10 << 20} {
		label := fmt.Sprintf("%dM", n>>20)
		for _, kind := range []string{"adamw", "lion", "adabelief"} {
			b.Run(kind+"/"+label, func(b *testing.B) {
				p := benchParam("w", n)
				s, err := New(kind)
				if err != nil {
					b.Fatal(err)
				}
				params := Params(p)
				if err := s.Step(params); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(28 * n))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					refillGrad(p, 1e-3*float32(i%7+1))
					b.StartTimer()
					if err := s.Step(params); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run("gorgonia-adam/"+label, func(b *testing.B) {
			p := benchParam("w", n)
			s := G.NewAdamSolver()
			params := []G.ValueGrad{p}
			refillGrad(p, 1e-3)
			if err := s.Step(params); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(28 * n))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Step(params); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("copy/"+label, func(b *testing.B) {
			src := make([]byte, 28*n)
			dst := make([]byte, 28*n)
			for i := range src {
				src[i] = byte(i)
			}
			copy(dst, src)
			b.SetBytes(int64(28 * n))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(dst, src)
			}
		})
	}
}
