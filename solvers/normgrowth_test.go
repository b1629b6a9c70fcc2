package solvers

import (
	"bytes"
	"math"
	"testing"
)

// TestNormGrowthSequence follows the limiter by hand on one tensor: gradients in the direction (3, 4)/5
// with norms 1, 2, 2, 0.5, 3, γ = 1.01, ε = 0. Stored norms: 1 (first step: stored, not limited),
// 1.01 (2 > 1.01·1: limited), 1.0201 (limited again), 0.5 (below 1.01·1.0201: untouched), 0.505.
func TestNormGrowthSequence(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		inner, _ := NewSGD(WithLR(1))
		s, err := NewNormGrowth(inner, Set("eps", 0))
		if err != nil {
			t.Fatal(err)
		}
		var p *Param
		if dtype == "float32" {
			p = NewParamFrom("w", []int{2}, []float32{0, 0})
		} else {
			p = NewParamFrom("w", []int{2}, []float64{0, 0})
		}
		norms := []float64{1, 2, 2, 0.5, 3}
		want := []float64{1, 1.01, 1.01 * 1.01, 0.5, 0.505}
		tol := 1e-14
		if dtype == "float32" {
			tol = 1e-6
		}
		prev := []float64{0, 0}
		for k, n := range norms {
			setGrad(p, []float64{0.6 * n, 0.8 * n})
			if err := s.Step(Params(p)); err != nil {
				t.Fatal(err)
			}
			got, ok := s.Norm("w")
			if !ok || math.Abs(got-want[k]) > tol {
				t.Fatalf("%s step %d: stored norm %v, want %v", dtype, k+1, got, want[k])
			}
			// The gradient the inner SGD (lr 1) applied has the stored norm and the original direction.
			x := values(p)
			d0, d1 := prev[0]-x[0], prev[1]-x[1]
			if math.Abs(math.Hypot(d0, d1)-want[k]) > tol || math.Abs(d0*0.8-d1*0.6) > tol {
				t.Fatalf("%s step %d: applied gradient (%v, %v), want norm %v along (0.6, 0.8)", dtype, k+1, d0, d1, want[k])
			}
			prev = x
		}
	}
}

// TestNormGrowthEps: with the reference's ε = 1e-8 the limited norm is γ(s + ε).
func TestNormGrowthEps(t *testing.T) {
	inner, _ := NewSGD(WithLR(1))
	s, _ := NewNormGrowth(inner)
	p := NewParamFrom("w", []int{1}, []float64{0})
	for _, g := range []float64{1, 5} {
		setGrad(p, []float64{g})
		if err := s.Step(Params(p)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Norm("w")
	if want := 1.01 * (1 + 1e-8); math.Abs(got-want) > 1e-15 {
		t.Fatalf("stored %v, want %v", got, want)
	}
}

// TestNormGrowthPerTensor: each tensor has its own history; a new tensor's first step is not limited.
func TestNormGrowthPerTensor(t *testing.T) {
	inner, _ := NewSGD(WithLR(1))
	s, _ := NewNormGrowth(inner, Set("gamma", 2), Set("eps", 0))
	a := NewParamFrom("a", []int{1}, []float64{0})
	b := NewParamFrom("b", []int{1}, []float64{0})
	setGrad(a, []float64{1})
	if err := s.Step(Params(a)); err != nil {
		t.Fatal(err)
	}
	setGrad(a, []float64{10})
	setGrad(b, []float64{1000})
	if err := s.Step(Params(a, b)); err != nil {
		t.Fatal(err)
	}
	na, _ := s.Norm("a")
	nb, _ := s.Norm("b")
	if na != 2 || nb != 1000 || values(a)[0] != -3 || values(b)[0] != -1000 {
		t.Fatalf("a: norm %v, x %v; b: norm %v, x %v", na, values(a), nb, values(b))
	}
}

func ngWrap(opts ...Option) func(Solver) (Solver, error) {
	return func(in Solver) (Solver, error) { return NewNormGrowth(in, opts...) }
}

func TestNormGrowthConvergence(t *testing.T) {
	wrapConverge(t, []wrapCase{
		{name: "normgrowth-sgd", inner: "sgd", wrap: ngWrap(), quad: 0.02, rosen: 1e-3, steps: 20000},
		{name: "normgrowth-adamw", inner: "adamw", wrap: ngWrap(), quad: 0.05, rosen: 0.02, steps: 10000},
	})
}

func TestNormGrowthNaN(t *testing.T) { wrapNaNPassesThrough(t, ngWrap()) }

func TestNormGrowthRoundTrip(t *testing.T) {
	for _, inner := range []string{"sgd", "adamw"} {
		wrapRoundTrip(t, func() (Solver, error) {
			return wrapCase{inner: inner, wrap: ngWrap(Set("gamma", 1.001))}.build(WithLR(0.01))
		}, false)
	}
}

func TestNormGrowthLoadRejectsMismatch(t *testing.T) {
	m := newTestModel("float64", 2)
	inner, _ := NewSGD()
	s, _ := NewNormGrowth(inner)
	m.fillGrads()
	if err := s.Step(Params(m.ps...)); err != nil {
		t.Fatal(err)
	}
	saved := stateBytesOf(t, s)
	// Another kind of wrapper refuses the file and keeps its state.
	inner2, _ := NewSGD()
	g, _ := NewGClip(inner2)
	before := stateBytesOf(t, g)
	if err := LoadState(bytes.NewReader(saved), g); err == nil {
		t.Fatal("gclip loaded a norm_growth state")
	}
	if string(before) != string(stateBytesOf(t, g)) {
		t.Fatal("failed load changed the state")
	}
	// A truncated file is refused and changes nothing.
	inner3, _ := NewSGD()
	s2, _ := NewNormGrowth(inner3)
	if err := LoadState(bytes.NewReader(saved[:len(saved)/2]), s2); err == nil {
		t.Fatal("truncated file accepted")
	}
	if _, ok := s2.Norm("w1"); ok {
		t.Fatal("truncated file changed the state")
	}
}

func TestNormGrowthNoAllocs(t *testing.T) {
	wrapNoAllocs(t, "norm_growth", func() (Solver, error) {
		return wrapCase{inner: "adamw", wrap: ngWrap()}.build(WithLR(0.01))
	})
}

func TestNormGrowthBadHyperparameters(t *testing.T) {
	bad := [][]Option{
		{Set("gamma", 0.5)}, {Set("gamma", 0)}, {Set("gamma", math.NaN())},
		{Set("eps", -1)}, {Set("delta", 1)},
	}
	for _, opts := range bad {
		inner, _ := NewSGD()
		if _, err := NewNormGrowth(inner, opts...); err == nil {
			t.Errorf("accepted %v", opts)
		}
	}
	if _, err := NewNormGrowth(nil); err == nil {
		t.Error("nil inner accepted")
	}
}
