package nn

import (
	"math"
	"math/rand"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// randT returns a float64 or float32 tensor with N(0, scale²) entries.
func randT(rng *rand.Rand, dt tensor.Dtype, scale float64, shape ...int) *tensor.Dense {
	return Normal(0, scale)(rng, dt, shape...)
}

// input creates a named input node holding v.
func input(g *G.ExprGraph, name string, v *tensor.Dense) *G.Node {
	return G.NewTensor(g, v.Dtype(), v.Dims(), G.WithShape(v.Shape()...), G.WithName(name), G.WithValue(v))
}

func intVec(g *G.ExprGraph, name string, xs []int) *G.Node {
	v := tensor.New(tensor.WithShape(len(xs)), tensor.WithBacking(append([]int(nil), xs...)))
	return G.NewVector(g, tensor.Int, G.WithShape(len(xs)), G.WithName(name), G.WithValue(v))
}

func f64s(t *testing.T, v G.Value) []float64 {
	t.Helper()
	switch x := v.(type) {
	case *tensor.Dense:
		switch x.Dtype() {
		case tensor.Float64:
			return append([]float64(nil), x.Data().([]float64)...)
		case tensor.Float32:
			out := make([]float64, x.Shape().TotalSize())
			for i, v := range x.Data().([]float32) {
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

// weightedCost returns Σ out ⊙ W for a fixed random W (the scalar cost of the gradient checks); a scalar out
// is multiplied by a fixed 1.7 so the incoming gradient is not 1.
func weightedCost(t *testing.T, rng *rand.Rand, out *G.Node) *G.Node {
	t.Helper()
	g := out.Graph()
	if out.IsScalar() {
		c := G.NewScalar(g, out.Dtype(), G.WithName("cost_scale"), G.WithValue(1.7))
		return G.Must(G.Mul(out, c))
	}
	w := input(g, "cost_weights", randT(rng, out.Dtype(), 1, out.Shape()...))
	return G.Must(G.Sum(G.Must(G.HadamardProd(out, w))))
}

// run compiles and runs a graph once with a TapeMachine and returns the cost.
func runCost(t *testing.T, vm G.VM, cost *G.Value) float64 {
	t.Helper()
	vm.Reset()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	c, err := scalarOf(*cost)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// gradCheck compares Gorgonia's gradients (G.Grad + TapeMachine) of Σ out ⊙ W with central finite
// differences, for every element of every node in wrt (float64). The bound is on the relative error of the
// whole gradient vector and, element by element, on |analytic − numeric| ≤ tol·‖numeric‖∞.
func gradCheck(t *testing.T, seed int64, tol float64, build func(g *G.ExprGraph) (out *G.Node, wrt G.Nodes)) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	g := G.NewGraph()
	out, wrt := build(g)
	cost := weightedCost(t, rng, out)
	var costVal G.Value
	G.Read(cost, &costVal)
	grads, err := G.Grad(cost, wrt...)
	if err != nil {
		t.Fatal(err)
	}
	gradVals := make([]G.Value, len(grads))
	for i, gn := range grads {
		G.Read(gn, &gradVals[i]) // registers are reused: read gradients through G.Read
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	runCost(t, vm, &costVal)
	analytic := make([][]float64, len(wrt))
	for i := range wrt {
		analytic[i] = f64s(t, gradVals[i])
	}
	const h = 1e-5
	for i, n := range wrt {
		data := n.Value().Data().([]float64)
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
		a := analytic[i]
		var diff, na, nn, maxN float64
		for j := range num {
			diff += (a[j] - num[j]) * (a[j] - num[j])
			na += a[j] * a[j]
			nn += num[j] * num[j]
			maxN = math.Max(maxN, math.Abs(num[j]))
		}
		rel := math.Sqrt(diff) / math.Max(math.Max(math.Sqrt(na), math.Sqrt(nn)), 1e-300)
		if nn == 0 {
			t.Fatalf("%s: numeric gradient is identically zero: the check would be vacuous", n.Name())
		}
		if rel > tol || math.IsNaN(rel) {
			t.Errorf("%s: relative gradient error %.3g > %.3g\nanalytic %v\nnumeric  %v", n.Name(), rel, tol, a, num)
			continue
		}
		for j := range num {
			if math.Abs(a[j]-num[j]) > tol*maxN {
				t.Errorf("%s[%d]: analytic %.12g numeric %.12g", n.Name(), j, a[j], num[j])
				break
			}
		}
		t.Logf("%s: %d elements, relative error %.2g", n.Name(), len(num), rel)
	}
}

// forward runs a graph once and returns out's value as float64s.
func forward(t *testing.T, g *G.ExprGraph, out *G.Node) []float64 {
	t.Helper()
	var v G.Value
	G.Read(out, &v)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return f64s(t, v)
}

func maxAbsDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func near(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	if d := maxAbsDiff(got, want); d > tol || math.IsNaN(d) {
		t.Errorf("%s: max abs difference %.3g > %.3g\ngot  %v\nwant %v", what, d, tol, got, want)
	}
}
