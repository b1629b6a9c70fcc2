package solvers

import (
	"math"
	"math/rand"
	"slices"
	"testing"
)

func TestCoordSelectMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, n := range []int{1, 2, 3, 5, 10, 17, 100, 1000, 4097} {
		for trial := 0; trial < 5; trial++ {
			a := make([]float64, n)
			for i := range a {
				switch trial {
				case 0:
					a[i] = rng.NormFloat64()
				case 1:
					a[i] = float64(rng.Intn(3)) // many ties
				case 2:
					a[i] = float64(i) // sorted
				case 3:
					a[i] = float64(n - i) // reversed
				default:
					a[i] = 7 // constant
				}
			}
			sorted := slices.Clone(a)
			slices.Sort(sorted)
			for _, k := range []int{0, n / 3, n / 2, n - 1} {
				b := slices.Clone(a)
				if got := coordSelect(b, k); got != sorted[k] {
					t.Fatalf("n=%d trial=%d k=%d: got %v, want %v", n, trial, k, got, sorted[k])
				}
			}
		}
	}
}

// ccStep runs one coord_clip(SGD lr=1) step from zero weights and returns the clipped gradient (= −x).
func ccStep(t *testing.T, dtype string, g []float64, opts ...Option) ([]float64, *CoordClip) {
	t.Helper()
	inner, _ := NewSGD(WithLR(1))
	s, err := NewCoordClip(inner, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var p *Param
	if dtype == "float32" {
		p = NewParamFrom("x", []int{len(g)}, make([]float32, len(g)))
	} else {
		p = NewParamFrom("x", []int{len(g)}, make([]float64, len(g)))
	}
	setGrad(p, g)
	if err := s.Step(Params(p)); err != nil {
		t.Fatal(err)
	}
	x := values(p)
	for i := range x {
		x[i] = -x[i]
	}
	return x, s
}

func TestCoordClipQuantileThreshold(t *testing.T) {
	g := []float64{1, -2, 3, -4, 5, -6, 7, -8, 9, -10}
	for _, dtype := range []string{"float32", "float64"} {
		// p = 0.2, N = 10: |g| sorted descending is 10, 9, 8, ...; index ⌊10·0.2⌋ = 2 gives τ = 8.
		got, s := ccStep(t, dtype, g, Set("fraction", 0.2))
		want := []float64{1, -2, 3, -4, 5, -6, 7, -8, 8, -8}
		if s.LastThreshold() != 8 || !slices.Equal(got, want) {
			t.Errorf("%s: τ = %v, clipped %v, want τ = 8, %v", dtype, s.LastThreshold(), got, want)
		}
		// p = 0.1: index 1, τ = 9: only the largest coordinate is clipped.
		got, s = ccStep(t, dtype, g, Set("fraction", 0.1))
		want = []float64{1, -2, 3, -4, 5, -6, 7, -8, 9, -9}
		if s.LastThreshold() != 9 || !slices.Equal(got, want) {
			t.Errorf("%s: τ = %v, clipped %v, want %v", dtype, s.LastThreshold(), got, want)
		}
		// threshold_scale 0.5 halves the quantile: τ = 4.
		got, _ = ccStep(t, dtype, g, Set("fraction", 0.2), Set("threshold_scale", 0.5))
		want = []float64{1, -2, 3, -4, 4, -4, 4, -4, 4, -4}
		if !slices.Equal(got, want) {
			t.Errorf("%s: scaled τ: %v, want %v", dtype, got, want)
		}
		// A fixed threshold replaces the quantile.
		got, s = ccStep(t, dtype, g, Set("threshold", 2.5))
		want = []float64{1, -2, 2.5, -2.5, 2.5, -2.5, 2.5, -2.5, 2.5, -2.5}
		if s.LastThreshold() != 2.5 || !slices.Equal(got, want) {
			t.Errorf("%s: fixed τ: %v, want %v", dtype, got, want)
		}
		// Fraction 0: nothing clipped.
		got, _ = ccStep(t, dtype, g, Set("fraction", 0))
		if !slices.Equal(got, g) {
			t.Errorf("%s: fraction 0 clipped: %v", dtype, got)
		}
	}
}

func TestCoordClipGlobalVersusPerTensor(t *testing.T) {
	// a = [1, 2, 3, 4], b = [10, 20, 30, 40] (mixed dtypes), p = 0.25.
	// Global: N = 8, index 2 of (40, 30, 20, 10, 4, 3, 2, 1) → τ = 20.
	// Per tensor: index 1 → τ_a = 3, τ_b = 30.
	for _, perTensor := range []bool{false, true} {
		inner, _ := NewSGD(WithLR(1))
		s, _ := NewCoordClip(inner, Set("fraction", 0.25), SetFlag("per_tensor", perTensor))
		a := NewParamFrom("a", []int{4}, make([]float32, 4))
		b := NewParamFrom("b", []int{2, 2}, make([]float64, 4))
		setGrad(a, []float64{1, 2, 3, 4})
		setGrad(b, []float64{10, 20, 30, 40})
		if err := s.Step(Params(a, b)); err != nil {
			t.Fatal(err)
		}
		wantA, wantB := []float64{-1, -2, -3, -4}, []float64{-10, -20, -20, -20}
		if perTensor {
			wantA, wantB = []float64{-1, -2, -3, -3}, []float64{-10, -20, -30, -30}
		}
		if !slices.Equal(values(a), wantA) || !slices.Equal(values(b), wantB) {
			t.Errorf("per_tensor=%v: a = %v, b = %v; want %v, %v", perTensor, values(a), values(b), wantA, wantB)
		}
	}
}

func ccWrap(opts ...Option) func(Solver) (Solver, error) {
	return func(in Solver) (Solver, error) { return NewCoordClip(in, opts...) }
}

func TestCoordClipConvergence(t *testing.T) {
	// Adaptive quantile clipping around AdamW stalls on these tiny problems once a single coordinate is
	// left far from its optimum (its gradient is clipped to the next-largest, which vanishes, while
	// Adam's second moment remembers the large values), so AdamW is checked with a fixed threshold here
	// and against a reference with the quantile rule in TestCoordClipEqualsPreclippedInner.
	wrapConverge(t, []wrapCase{
		{name: "coordclip-sgd", inner: "sgd", wrap: ccWrap(Set("fraction", 0.25)), quad: 0.02, rosen: 1e-3, steps: 20000},
		{name: "coordclip-fixed-sgd", inner: "sgd", wrap: ccWrap(Set("threshold", 50)), quad: 0.02, rosen: 1e-3, steps: 20000},
		{name: "coordclip-fixed-adamw", inner: "adamw", wrap: ccWrap(Set("threshold", 1)), quad: 0.05, rosen: 0.02, steps: 10000},
	})
}

// TestCoordClipEqualsPreclippedInner: coord_clip(inner) takes the same steps, bit for bit, as inner given
// gradients clipped by a sort-based reference of the rule (τ = sorted-descending |g| at ⌊N·p⌋).
func TestCoordClipEqualsPreclippedInner(t *testing.T) {
	for _, inner := range []string{"sgd", "adamw"} {
		for _, perTensor := range []bool{false, true} {
			for _, dtype := range []string{"float32", "float64"} {
				const p = 0.2
				s, _ := wrapCase{inner: inner, wrap: ccWrap(Set("fraction", p), SetFlag("per_tensor", perTensor))}.build(WithLR(0.01))
				ref, _ := wrapCase{inner: inner, wrap: func(s Solver) (Solver, error) { return s, nil }}.build(WithLR(0.01))
				m1, m2 := newTestModel(dtype, 9), newTestModel(dtype, 9)
				for k := 0; k < 10; k++ {
					m1.fillGrads()
					m2.fillGrads()
					ccRefClip(m2.ps, p, perTensor)
					if err := s.Step(Params(m1.ps...)); err != nil {
						t.Fatal(err)
					}
					if err := ref.Step(Params(m2.ps...)); err != nil {
						t.Fatal(err)
					}
				}
				if !sameBits(m1.snapshot(), m2.snapshot()) {
					t.Errorf("%s per_tensor=%v %s: trajectories differ", inner, perTensor, dtype)
				}
			}
		}
	}
}

// ccRefClip clips the gradients of ps by the reference rule, sorting a copy of |g|.
func ccRefClip(ps []*Param, p float64, perTensor bool) {
	groups := [][]*Param{ps}
	if perTensor {
		groups = nil
		for _, q := range ps {
			groups = append(groups, []*Param{q})
		}
	}
	for _, grp := range groups {
		var all []float64
		for _, q := range grp {
			for _, e := range ccGradValues(q) {
				all = append(all, math.Abs(e))
			}
		}
		slices.SortFunc(all, func(a, b float64) int { return -ccCmpFloat(a, b) })
		tau := all[int(float64(len(all))*p)]
		for _, q := range grp {
			g := ccGradValues(q)
			for i, e := range g {
				if math.Abs(e) >= tau {
					g[i] = math.Copysign(tau, e)
				}
			}
			setGrad(q, g)
		}
	}
}

func ccCmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ccGradValues(p *Param) []float64 {
	switch d := p.GradTensor().Data().(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return slices.Clone(d)
	}
	panic("unreachable")
}

func TestCoordClipNaN(t *testing.T) { wrapNaNPassesThrough(t, ccWrap(Set("fraction", 0.3))) }

func TestCoordClipRoundTrip(t *testing.T) {
	for _, inner := range []string{"sgd", "adamw"} {
		wrapRoundTrip(t, func() (Solver, error) {
			return wrapCase{inner: inner, wrap: ccWrap(Set("fraction", 0.2))}.build(WithLR(0.01))
		}, false)
	}
}

func TestCoordClipNoAllocs(t *testing.T) {
	for _, pt := range []bool{false, true} {
		wrapNoAllocs(t, "coord_clip", func() (Solver, error) {
			return wrapCase{inner: "sgd", wrap: ccWrap(Set("fraction", 0.05), SetFlag("per_tensor", pt))}.build(WithLR(0.01))
		})
	}
}

func TestCoordClipBadHyperparameters(t *testing.T) {
	bad := [][]Option{
		{Set("fraction", 1)}, {Set("fraction", -0.1)}, {Set("fraction", math.NaN())},
		{Set("threshold", -1)}, {Set("threshold", math.Inf(1))},
		{Set("threshold_scale", 0)}, {Set("threshold_scale", -2)},
		{Set("per_tensor", 2)}, {Set("gamma", 1)},
	}
	for _, opts := range bad {
		inner, _ := NewSGD()
		if _, err := NewCoordClip(inner, opts...); err == nil {
			t.Errorf("accepted %v", opts)
		}
	}
	if _, err := NewCoordClip(nil); err == nil {
		t.Error("nil inner accepted")
	}
}
