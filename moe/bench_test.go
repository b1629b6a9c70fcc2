package moe

import (
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/gradlab/gradlab/nn"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Benchmark sizes: 512 tokens of width 128; 8 experts of d_ff 256, top-2; the dense SwiGLU of the same
// active size has d_ff = 2·256 = 512.
const benchT, benchD, benchE, benchK, benchFF = 512, 128, 8, 2, 256

// benchGraph times forward + backward of y(x) on a TapeMachine, cost Σ y ⊙ W, float32, and reports the time
// per token.
func benchGraph(b *testing.B, build func(nb *nn.Builder, x *G.Node) (*G.Node, G.Nodes)) {
	rng := rand.New(rand.NewSource(1))
	g := G.NewGraph()
	nb, err := nn.NewBuilder(g, tensor.Float32, rng)
	if err != nil {
		b.Fatal(err)
	}
	x := G.NewMatrix(g, tensor.Float32, G.WithShape(benchT, benchD), G.WithName("x"),
		G.WithValue(nn.Normal(0, 1)(rng, tensor.Float32, benchT, benchD)))
	y, params := build(nb, x)
	w := G.NewMatrix(g, tensor.Float32, G.WithShape(benchT, benchD), G.WithName("w"),
		G.WithValue(nn.Normal(0, 1)(rng, tensor.Float32, benchT, benchD)))
	cost := G.Must(G.Sum(G.Must(G.HadamardProd(y, w))))
	wrt := append(params, x)
	if _, err := G.Grad(cost, wrt...); err != nil {
		b.Fatal(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(wrt...))
	defer vm.Close()
	for i := 0; i < 3; i++ { // warm up
		if err := vm.RunAll(); err != nil {
			b.Fatal(err)
		}
		vm.Reset()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := vm.RunAll(); err != nil {
			b.Fatal(err)
		}
		vm.Reset()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchT, "ns/token")
}

// BenchmarkMoE compares, forward + backward in float32, an MoE layer with 8 experts and top-2 (softmax
// router; sparse Experts op; and the dense masked reference) with a dense SwiGLU of the same active size
// (d_ff = 2·d_ff_expert). Compute should scale with k, not with the number of experts.
func BenchmarkMoE(b *testing.B) {
	cfg := Config{Dim: benchD, Hidden: benchFF, Experts: benchE, TopK: benchK}
	moe := func(dense bool) func(nb *nn.Builder, x *G.Node) (*G.Node, G.Nodes) {
		return func(nb *nn.Builder, x *G.Node) (*G.Node, G.Nodes) {
			l, err := NewLayer(nb, "moe", cfg)
			if err != nil {
				b.Fatal(err)
			}
			var o *Output
			if dense {
				o, err = l.ForwardDense(x)
			} else {
				o, err = l.Forward(x)
			}
			if err != nil {
				b.Fatal(err)
			}
			return o.Y, l.Params()
		}
	}
	b.Run("moe-sparse", func(b *testing.B) { benchGraph(b, moe(false)) })
	b.Run("swiglu-dense-same-active", func(b *testing.B) {
		benchGraph(b, func(nb *nn.Builder, x *G.Node) (*G.Node, G.Nodes) {
			f, err := nn.NewSwiGLU(nb, "ffn", benchD, nn.WithHidden(benchK*benchFF))
			if err != nil {
				b.Fatal(err)
			}
			return G.Must(f.Forward(x)), f.Params()
		})
	})
	b.Run("moe-dense-reference", func(b *testing.B) { benchGraph(b, moe(true)) })
}

// BenchmarkMoEPaired times the sparse MoE layer and the dense SwiGLU of the same active size (sizes as in
// BenchmarkMoE) alternately, one forward + backward of each per iteration, and reports the median time per
// token of each and the ratio of the medians: on a shared, noisy machine alternating keeps both under the
// same load.
func BenchmarkMoEPaired(b *testing.B) {
	cfg := Config{Dim: benchD, Hidden: benchFF, Experts: benchE, TopK: benchK}
	mk := func(build func(nb *nn.Builder, x *G.Node) (*G.Node, G.Nodes)) G.VM {
		rng := rand.New(rand.NewSource(1))
		g := G.NewGraph()
		nb, _ := nn.NewBuilder(g, tensor.Float32, rng)
		x := G.NewMatrix(g, tensor.Float32, G.WithShape(benchT, benchD), G.WithName("x"),
			G.WithValue(nn.Normal(0, 1)(rng, tensor.Float32, benchT, benchD)))
		y, params := build(nb, x)
		w := G.NewMatrix(g, tensor.Float32, G.WithShape(benchT, benchD), G.WithName("w"),
			G.WithValue(nn.Normal(0, 1)(rng, tensor.Float32, benchT, benchD)))
		cost := G.Must(G.Sum(G.Must(G.HadamardProd(y, w))))
		wrt := append(params, x)
		if _, err := G.Grad(cost, wrt...); err != nil {
			b.Fatal(err)
		}
		return G.NewTapeMachine(g, G.BindDualValues(wrt...))
	}
	moe := mk(func(nb *nn.Builder, x *G.Node) (*G.Node, G.Nodes) {
		l, err := NewLayer(nb, "moe", cfg)
		if err != nil {
			b.Fatal(err)
		}
		o, err := l.Forward(x)
		if err != nil {
			b.Fatal(err)
		}
		return o.Y, l.Params()
	})
	defer moe.Close()
	dense := mk(func(nb *nn.Builder, x *G.Node) (*G.Node, G.Nodes) {
		f, err := nn.NewSwiGLU(nb, "ffn", benchD, nn.WithHidden(benchK*benchFF))
		if err != nil {
			b.Fatal(err)
		}
		return G.Must(f.Forward(x)), f.Params()
	})
	defer dense.Close()
	step := func(vm G.VM) time.Duration {
		t0 := time.Now()
		if err := vm.RunAll(); err != nil {
			b.Fatal(err)
		}
		vm.Reset()
		return time.Since(t0)
	}
	for i := 0; i < 3; i++ {
		step(moe)
		step(dense)
	}
	var tm, td []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tm = append(tm, float64(step(moe).Nanoseconds()))
		td = append(td, float64(step(dense).Nanoseconds()))
	}
	b.StopTimer()
	mm, md := median(tm), median(td)
	b.ReportMetric(mm/benchT, "moe-ns/token")
	b.ReportMetric(md/benchT, "dense-ns/token")
	b.ReportMetric(mm/md, "moe/dense")
	b.ReportMetric(0, "ns/op")
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
