package solvers

import (
	"math"
	"math/rand"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"
)

// TestMFACInverseEqualsExplicit: after more steps than the window holds, M-FAC's IHVP equals
// (damp·I + (1/m)Σ g gᵀ)⁻¹x over the last m gradients, computed densely, to 1e-8.
func TestMFACInverseEqualsExplicit(t *testing.T) {
	// a wrapped window (m-space solve), a partly filled one (solve on the filled rows) and d < filled
	// rows (d×d solve).
	for _, c := range []struct {
		name     string
		shape    []int
		m, steps int
	}{
		{"wrapped", []int{3, 4}, 5, 8},
		{"partial", []int{3, 4}, 20, 8},
		{"param-space", []int{3}, 8, 10},
	} {
		t.Run(c.name, func(t *testing.T) { mfacInverseCase(t, c.shape, c.m, c.steps) })
	}
}

func mfacInverseCase(t *testing.T, shape []int, m, steps int) {
	d, damp := 1, 1e-2
	for _, n := range shape {
		d *= n
	}
	s, err := NewMFAC(Set("ngrads", float64(m)), Set("damp", damp), WithLR(1e-3))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	par := NewParamFrom("w", shape, make([]float64, d))
	var hist [][]float64
	for k := 0; k < steps; k++ {
		g := make([]float64, d)
		for i := range g {
			g[i] = rng.NormFloat64()
		}
		hist = append(hist, g)
		setGrad(par, g)
		if err := s.Step(Params(par)); err != nil {
			t.Fatal(err)
		}
	}
	f := mat.NewDense(d, d, nil)
	for i := 0; i < d; i++ {
		f.Set(i, i, damp)
	}
	for _, g := range hist[max(0, len(hist)-m):] {
		gv := mat.NewVecDense(d, g)
		var outer mat.Dense
		outer.Outer(1/float64(m), gv, gv)
		f.Add(f, &outer)
	}
	x := make([]float64, d)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	var want mat.VecDense
	if err := want.SolveVec(f, mat.NewVecDense(d, x)); err != nil {
		t.Fatal(err)
	}
	got := make([]float64, d)
	if err := s.IHVP(x, got); err != nil {
		t.Fatal(err)
	}
	var worst float64
	for i := range got {
		worst = math.Max(worst, math.Abs(got[i]-want.AtVec(i))/math.Max(1, math.Abs(want.AtVec(i))))
	}
	t.Logf("max relative IHVP difference %.3g (|F⁻¹x| up to %.3g)", worst, mat.Norm(&want, math.Inf(1)))
	if worst > 1e-8 {
		t.Fatalf("IHVP differs from the explicit inverse by %g", worst)
	}
	if got, want := s.StateBytes(), int64(8*(m*d+m*m)); got != want {
		t.Fatalf("StateBytes %d, want %d", got, want)
	}
}

// TestMFACDefaultWindowIsCheap: with the reference's window of 1024 gradients, the first steps on a tiny
// problem cost O(filled rows), not O(m³) (this once made a 1-D experiment run for minutes).
func TestMFACDefaultWindowIsCheap(t *testing.T) {
	s, _ := NewMFAC()
	par := NewParamFrom("x", []int{1}, []float64{1})
	start := time.Now()
	for k := 0; k < 300; k++ {
		setGrad(par, []float64{values(par)[0]})
		if err := s.Step(Params(par)); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("300 steps on one parameter took %v", el)
	}
}

func TestMFACConvergence(t *testing.T) {
	curvConvergence(t, []curvCase{{
		name:  "mfac",
		build: plain("mfac"),
		opts:  []Option{Set("ngrads", 4), Set("damp", 1)},
		lr:    map[string]float64{"quadratic": 0.1, "rosenbrock": 0.03, "logistic": 0.3},
		steps: map[string]int{"quadratic": 3000, "rosenbrock": 10000, "logistic": 300},
		fixed: true,
	}})
}

func TestMFACStateRoundTrip(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		roundTrip(t, func() (Solver, error) {
			return NewMFAC(Set("ngrads", 4), Set("damp", 0.5), WithMomentum(0.5), WithWeightDecay(0.01), WithLR(0.01))
		}, dtype, 7, 5, nil, nil)
	}
}

func TestMFACOptionsAndRefusal(t *testing.T) {
	for _, o := range [][]Option{{Set("ngrads", 0)}, {Set("ngrads", 2.5)}, {Set("damp", 0)}, {WithMomentum(1)}, {WithLR(-1)}, {Set("beta1", 0.9)}} {
		if _, err := NewMFAC(o...); err == nil {
			t.Fatalf("options %v accepted", o)
		}
	}
	s, _ := NewMFAC(Set("ngrads", 3))
	tm := newTestModel("float64", 1)
	tm.fillGrads()
	setGrad(tm.ps[0], append([]float64{math.NaN()}, make([]float64, 11)...))
	before := tm.snapshot()
	if err := s.Step(Params(tm.ps...)); err == nil || !sameBits(before, tm.snapshot()) || s.StateBytes() != 0 {
		t.Fatalf("non-finite gradient: err %v, or weights/state changed", err)
	}
	tm.fillGrads()
	if err := s.Step(Params(tm.ps...)); err != nil {
		t.Fatal(err)
	}
	tm.fillGrads()
	if err := s.Step(Params(tm.ps[1:]...)); err == nil {
		t.Fatal("another parameter list accepted")
	}
	tm.fillGrads()
	ps := Params(tm.ps...)
	if n := testing.AllocsPerRun(10, func() { _ = s.Step(ps) }); n != 0 {
		t.Fatalf("%v allocations per step", n)
	}
}
