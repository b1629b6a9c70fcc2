package nn

import (
	"math/rand"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// benchStep times one forward and backward pass of a graph on a TapeMachine.
func benchStep(b *testing.B, build func(g *G.ExprGraph, x, w *G.Node) *G.Node, rows, d int) {
	rng := rand.New(rand.NewSource(1))
	g := G.NewGraph()
	x := input(g, "x", randT(rng, tensor.Float32, 1, rows, d))
	gamma := input(g, "gamma", Normal(1, 0.1)(rng, tensor.Float32, d))
	y := build(g, x, gamma)
	cost := G.Must(G.Sum(G.Must(G.HadamardProd(y, input(g, "w", randT(rng, tensor.Float32, 1, rows, d))))))
	wrt := G.Nodes{x}
	if g.To(gamma.ID()).Len() > 0 { // gamma is used
		wrt = append(wrt, gamma)
	}
	if _, err := G.Grad(cost, wrt...); err != nil {
		b.Fatal(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(wrt...))
	defer vm.Close()
	b.SetBytes(int64(4 * rows * d))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := vm.RunAll(); err != nil {
			b.Fatal(err)
		}
		vm.Reset()
	}
}

// BenchmarkRMSNorm compares the fused op with the composition of Gorgonia ops (forward + backward,
// float32, 2048 rows of 256 features).
func BenchmarkRMSNorm(b *testing.B) {
	const rows, d = 2048, 256
	b.Run("fused", func(b *testing.B) {
		benchStep(b, func(g *G.ExprGraph, x, w *G.Node) *G.Node { return G.Must(ApplyRMSNorm(x, w, DefaultEps)) }, rows, d)
	})
	b.Run("composed", func(b *testing.B) {
		benchStep(b, func(g *G.ExprGraph, x, w *G.Node) *G.Node {
			ms := G.Must(G.Mean(G.Must(G.Square(x)), 1))
			r := G.Must(G.Sqrt(G.Must(G.Add(ms, G.NewConstant(float32(DefaultEps))))))
			xh := G.Must(G.BroadcastHadamardDiv(x, G.Must(G.Reshape(r, tensor.Shape{rows, 1})), nil, []byte{1}))
			return G.Must(G.BroadcastHadamardProd(xh, G.Must(G.Reshape(w, tensor.Shape{1, d})), nil, []byte{0}))
		}, rows, d)
	})
}

// BenchmarkSiLU compares the fused op with x ⊙ Sigmoid(x).
func BenchmarkSiLU(b *testing.B) {
	const rows, d = 2048, 256
	b.Run("fused", func(b *testing.B) {
		benchStep(b, func(g *G.ExprGraph, x, w *G.Node) *G.Node { return G.Must(SiLU(x)) }, rows, d)
	})
	b.Run("composed", func(b *testing.B) {
		benchStep(b, func(g *G.ExprGraph, x, w *G.Node) *G.Node {
			return G.Must(G.HadamardProd(x, G.Must(G.Sigmoid(x))))
		}, rows, d)
	})
}

// BenchmarkCrossEntropy compares the fused op with LogSoftMax ⊙ constant one-hot → Sum (float32,
// 512 rows, vocabulary 4096).
func BenchmarkCrossEntropy(b *testing.B) {
	const rows, V = 512, 4096
	rng := rand.New(rand.NewSource(2))
	tg := make([]int, rows)
	oh := make([]float32, rows*V)
	for i := range tg {
		tg[i] = rng.Intn(V)
		oh[i*V+tg[i]] = -1.0 / rows
	}
	run := func(b *testing.B, fused bool) {
		g := G.NewGraph()
		z := input(g, "z", randT(rng, tensor.Float32, 2, rows, V))
		var loss *G.Node
		if fused {
			loss = G.Must(CrossEntropyInts(z, tg))
		} else {
			loss = G.Must(G.Sum(G.Must(G.HadamardProd(G.Must(G.LogSoftMax(z, 1)),
				g.Constant(tensor.New(tensor.WithShape(rows, V), tensor.WithBacking(oh)))))))
		}
		if _, err := G.Grad(loss, z); err != nil {
			b.Fatal(err)
		}
		vm := G.NewTapeMachine(g, G.BindDualValues(z))
		defer vm.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := vm.RunAll(); err != nil {
				b.Fatal(err)
			}
			vm.Reset()
		}
	}
	b.Run("fused", func(b *testing.B) { run(b, true) })
	b.Run("composed", func(b *testing.B) { run(b, false) })
}
