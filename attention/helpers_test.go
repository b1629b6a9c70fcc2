package attention

import (
	"math"
	"math/rand"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/nn"
)

func randT(rng *rand.Rand, dt tensor.Dtype, scale float64, shape ...int) *tensor.Dense {
	return nn.Normal(0, scale)(rng, dt, shape...)
}

func input(g *G.ExprGraph, name string, v *tensor.Dense) *G.Node {
	return G.NewTensor(g, v.Dtype(), v.Dims(), G.WithShape(v.Shape()...), G.WithName(name), G.WithValue(v))
}

func f64s(t *testing.T, v G.Value) []float64 {
	t.Helper()
	switch x := v.(type) {
	case *tensor.Dense:
		if x.RequiresIterator() {
			x = x.Materialize().(*tensor.Dense)
		}
		switch x.Dtype() {
		case tensor.Float64:
			return append([]float64(nil), x.Data().([]float64)[:x.Shape().TotalSize()]...)
		case tensor.Float32:
			out := make([]float64, x.Shape().TotalSize())
			for i, v := range x.Data().([]float32)[:len(out)] {
				out[i] = float64(v)
			}
			return out
		}
	case *G.F64:
		return []float64{float64(*x)}
	case *G.F32:
		return []float64{float64(*x)}
	}
	t.Fatalf("unexpected value %T", v)
	return nil
}

func scalarOf(t *testing.T, v G.Value) float64 {
	t.Helper()
	xs := f64s(t, v)
	if len(xs) != 1 {
		t.Fatalf("want a scalar, got %d values", len(xs))
	}
	return xs[0]
}

// weightedCost returns Σ out ⊙ W for a fixed random W.
func weightedCost(rng *rand.Rand, out *G.Node) *G.Node {
	w := input(out.Graph(), "cost_weights", randT(rng, out.Dtype(), 1, out.Shape()...))
	return G.Must(G.Sum(G.Must(G.HadamardProd(out, w))))
}

func runCost(t *testing.T, vm G.VM, cost *G.Value) float64 {
	t.Helper()
	vm.Reset()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return scalarOf(t, *cost)
}

// gradCheck compares Gorgonia's gradients of Σ out ⊙ W (G.Grad + TapeMachine) with central finite
// differences (h = 1e-5) for every element of every node in wrt (float64): relative error of each node's
// whole gradient ≤ tol, and element by element |analytic − numeric| ≤ tol·‖numeric‖∞. It returns the
// largest relative error.
func gradCheck(t *testing.T, seed int64, tol float64, build func(g *G.ExprGraph) (out *G.Node, wrt G.Nodes)) float64 {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	g := G.NewGraph()
	out, wrt := build(g)
	cost := weightedCost(rng, out)
	var costVal G.Value
	G.Read(cost, &costVal)
	grads, err := G.Grad(cost, wrt...)
	if err != nil {
		t.Fatal(err)
	}
	gradVals := make([]G.Value, len(grads))
	for i, gn := range grads {
		G.Read(gn, &gradVals[i])
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	c0 := runCost(t, vm, &costVal)
	analytic := make([][]float64, len(wrt))
	for i := range wrt {
		analytic[i] = f64s(t, gradVals[i])
	}
	const h = 1e-5
	worst := 0.0
	for i, n := range wrt {
		data := n.Value().Data().([]float64)
		before := append([]float64(nil), data...)
		num := make([]float64, len(data))
		for j := range data {
			x0 := data[j]
			data[j] = x0 + h
			cp := runCost(t, vm, &costVal)
			data[j] = x0 - h
			cm := runCost(t, vm, &costVal)
			data[j] = x0
			num[j] = (cp - cm) / (2 * h)
		}
		for j := range data {
			if data[j] != before[j] {
				t.Fatalf("%s was modified by the forward pass", n.Name())
			}
		}
		a := analytic[i]
		var diff, na, nnum, maxN float64
		for j := range num {
			diff += (a[j] - num[j]) * (a[j] - num[j])
			na += a[j] * a[j]
			nnum += num[j] * num[j]
			maxN = math.Max(maxN, math.Abs(num[j]))
		}
		if nnum == 0 {
			t.Fatalf("%s: numeric gradient is identically zero: the check would be vacuous", n.Name())
		}
		rel := math.Sqrt(diff) / math.Max(math.Sqrt(na), math.Sqrt(nnum))
		worst = math.Max(worst, rel)
		if rel > tol || math.IsNaN(rel) {
			t.Errorf("%s: relative gradient error %.3g > %.3g", n.Name(), rel, tol)
			continue
		}
		for j := range num {
			if math.Abs(a[j]-num[j]) > tol*maxN {
				t.Errorf("%s[%d]: analytic %.12g numeric %.12g", n.Name(), j, a[j], num[j])
				break
			}
		}
		t.Logf("%-22s %4d elements, relative error %.2g", n.Name(), len(num), rel)
	}
	if c1 := runCost(t, vm, &costVal); c1 != c0 {
		t.Errorf("cost changed after the check: %v → %v", c0, c1)
	}
	return worst
}

// forwardRows runs the graph once and returns out's value as float64s.
func forwardRows(t *testing.T, vm G.VM, out *G.Value) []float64 {
	t.Helper()
	vm.Reset()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return f64s(t, *out)
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// randomizeGains sets the RMSNorm gains to 1 + N(0, 0.3²) so the checks do not rely on unit gains.
func randomizeGains(rng *rand.Rand, gains ...*G.Node) {
	for _, n := range gains {
		if n == nil {
			continue
		}
		switch d := n.Value().Data().(type) {
		case []float64:
			for i := range d {
				d[i] = 1 + 0.3*rng.NormFloat64()
			}
		case []float32:
			for i := range d {
				d[i] = float32(1 + 0.3*rng.NormFloat64())
			}
		}
	}
}
