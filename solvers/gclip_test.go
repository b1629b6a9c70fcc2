package solvers

import (
	"math"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// Helpers shared by the issue-4 wrapper tests (gclip, coord_clip, norm_growth, ema, swa).

// wrapCase builds a wrapper around an inner solver built from opts (the inner's learning rate options).
type wrapCase struct {
	name  string
	inner string // "sgd" (momentum 0.9) or "adamw"
	wrap  func(inner Solver) (Solver, error)
	quad  float64
	rosen float64
	steps int
}

func (c wrapCase) build(lrOpt Option) (Solver, error) {
	var inner Solver
	var err error
	if c.inner == "adamw" {
		inner, err = NewAdamW(lrOpt, WithWeightDecay(0))
	} else {
		inner, err = NewSGD(lrOpt, WithMomentum(0.9))
	}
	if err != nil {
		return nil, err
	}
	return c.wrap(inner)
}

// wrapConverge runs the cases on the quadratic and Rosenbrock in both dtypes (cosine-annealed lr).
func wrapConverge(t *testing.T, cases []wrapCase) {
	for _, c := range cases {
		for _, p := range []problem{quadratic(), rosenbrock()} {
			for _, dtype := range []string{"float32", "float64"} {
				t.Run(c.name+"/"+p.name+"/"+dtype, func(t *testing.T) {
					steps, lr := 2000, c.quad
					if p.name == "rosenbrock" {
						steps, lr = c.steps, c.rosen
					}
					s, err := c.build(WithSchedule(schedule.Must(schedule.Cosine(lr, 0, steps))))
					if err != nil {
						t.Fatal(err)
					}
					x := minimize(t, s, p, dtype, steps)
					if !p.done(x) {
						t.Fatalf("did not converge: x = %v, f = %g", x, p.f(x))
					}
				})
			}
		}
	}
}

// wrapRoundTrip: N steps, save, load into a fresh solver, M steps equals N+M steps bit for bit. With
// swap, the averaged copies are swapped in at the end so that they are compared too.
func wrapRoundTrip(t *testing.T, build func() (Solver, error), swap bool) {
	t.Helper()
	for _, dtype := range []string{"float32", "float64"} {
		r := roundTrip(t, build, dtype, 7, 6, nil, nil)
		if swap {
			a1, a3 := r.straight.(averagedSwapper), r.resumed.(averagedSwapper)
			if err := a1.SwapAveraged(Params(r.ref.ps...)); err != nil {
				t.Fatal(err)
			}
			if err := a3.SwapAveraged(Params(r.run.ps...)); err != nil {
				t.Fatal(err)
			}
			if !sameBits(r.ref.snapshot(), r.run.snapshot()) {
				t.Fatalf("%s: save/load changed the averages", dtype)
			}
		}
		if string(stateBytesOfSafe(t, r.straight, swap)) != string(stateBytesOfSafe(t, r.resumed, swap)) {
			t.Fatalf("%s: states differ after the round trip", dtype)
		}
	}
}

// averagedSwapper is implemented by EMA and SWA.
type averagedSwapper interface {
	SwapAveraged(params []G.ValueGrad) error
}

// stateBytesOfSafe serialises s (swapping averages back out first when swapped).
func stateBytesOfSafe(t *testing.T, s Solver, swapped bool) []byte {
	t.Helper()
	if swapped {
		return nil // averages are swapped in: saving is refused by design; compared through the weights
	}
	return stateBytesOf(t, s)
}

// wrapNoAllocs: after the first step, a step allocates nothing (float32 and float64 tensors, one split
// across cores).
func wrapNoAllocs(t *testing.T, name string, build func() (Solver, error)) {
	t.Helper()
	for _, n := range []int{1000, 1 << 16} {
		s, err := build()
		if err != nil {
			t.Fatal(err)
		}
		p32 := NewParamFrom("a", []int{n}, make([]float32, n))
		p64 := NewParamFrom("b", []int{n}, make([]float64, n))
		g32, g64 := make([]float64, n), make([]float64, n)
		for i := range g32 {
			g32[i] = math.Sin(float64(i))
			g64[i] = math.Cos(float64(i))
		}
		params := Params(p32, p64)
		d32, d64 := p32.GradTensor().Float32s(), p64.GradTensor().Float64s()
		refill := func() {
			for i := range d32 {
				d32[i] = float32(g32[i])
			}
			copy(d64, g64)
		}
		refill()
		if err := s.Step(params); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(20, func() {
			refill()
			if err := s.Step(params); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s (n=%d): %v allocations per step", name, n, allocs)
		}
	}
}

// wrapNaNPassesThrough: a NaN gradient reaches the inner solver's policy unclipped: refused by default
// (weights unchanged, the NaN still in the gradient), skipped without error under SkipNonFinite.
func wrapNaNPassesThrough(t *testing.T, wrap func(inner Solver) (Solver, error)) {
	t.Helper()
	for _, policy := range []NonFinitePolicy{RefuseNonFinite, SkipNonFinite} {
		inner, _ := NewSGD(WithLR(0.1), WithMomentum(0.9), WithNonFinite(policy))
		s, err := wrap(inner)
		if err != nil {
			t.Fatal(err)
		}
		m := newTestModel("float64", 5)
		for k := 0; k < 3; k++ {
			m.fillGrads()
			if err := s.Step(Params(m.ps...)); err != nil {
				t.Fatal(err)
			}
		}
		before := m.snapshot()
		state := stateBytesOf(t, s)
		m.fillGrads()
		g := m.ps[0].GradTensor().Data().([]float64)
		g[1] = math.NaN()
		g[2] = 1e300 // huge finite values elsewhere must not turn the NaN into a finite clipped value
		err = s.Step(Params(m.ps...))
		if policy == RefuseNonFinite {
			if err == nil {
				t.Fatal("NaN gradient: step not refused")
			}
			if !math.IsNaN(g[1]) {
				t.Fatalf("NaN gradient was clipped into %v", g[1])
			}
		} else if err != nil {
			t.Fatalf("skip policy: %v", err)
		}
		if !sameBits(before, m.snapshot()) {
			t.Fatal("weights changed on a non-finite step")
		}
		// (Under SkipNonFinite the inner solver counts the skipped step in its state.)
		if policy == RefuseNonFinite && string(state) != string(stateBytesOf(t, s)) {
			t.Fatalf("%v: state changed on a non-finite step", policy)
		}
	}
}

func TestGClipMultiplier(t *testing.T) {
	cases := []struct {
		name         string
		gamma, delta float64
		g            []float64
		want         float64 // multiplier
	}{
		{"clipped", 1, 0.1, []float64{3, 4}, 0.2},               // γ/‖g‖ = 1/5
		{"floor delta", 0.1, 0.5, []float64{3, 4}, 0.5},         // γ/‖g‖ = 0.02 < δ
		{"small gradient", 0.1, 0.01, []float64{0.03, 0.04}, 1}, // γ/‖g‖ = 2 > 1
		{"delta zero", 1, 0, []float64{6, 8}, 0.1},
	}
	for _, c := range cases {
		for _, dtype := range []string{"float32", "float64"} {
			inner, _ := NewSGD(WithLR(1))
			s, err := NewGClip(inner, Set("gamma", c.gamma), Set("delta", c.delta))
			if err != nil {
				t.Fatal(err)
			}
			var p *Param
			if dtype == "float32" {
				p = NewParamFrom("x", []int{2}, []float32{0, 0})
			} else {
				p = NewParamFrom("x", []int{2}, []float64{0, 0})
			}
			setGrad(p, c.g)
			if err := s.Step(Params(p)); err != nil {
				t.Fatal(err)
			}
			if math.Abs(s.LastFactor()-c.want) > 1e-15 {
				t.Errorf("%s/%s: multiplier %v, want %v", c.name, dtype, s.LastFactor(), c.want)
			}
			tol := 1e-15
			if dtype == "float32" {
				tol = 1e-6
			}
			x := values(p)
			for i := range x {
				if math.Abs(x[i]+c.want*c.g[i]) > tol {
					t.Errorf("%s/%s: x = %v, want %v·(−g)", c.name, dtype, x, c.want)
				}
			}
			// The step length stays in [ηδ‖g‖, η‖g‖].
			n := math.Hypot(x[0], x[1])
			gn := math.Hypot(c.g[0], c.g[1])
			if n < c.delta*gn-tol || n > gn+tol {
				t.Errorf("%s: step %v outside [ηδ‖g‖, η‖g‖]", c.name, n)
			}
		}
	}
}

func TestGClipGlobalAndPerTensorNorm(t *testing.T) {
	// a = [3], b = [4]: the global norm is 5, so both get γ/5; per tensor, γ/3 and γ/4.
	for _, perTensor := range []bool{false, true} {
		inner, _ := NewSGD(WithLR(1))
		s, _ := NewGClip(inner, Set("gamma", 1), Set("delta", 0), SetFlag("per_tensor", perTensor))
		a := NewParamFrom("a", []int{1}, []float64{0})
		b := NewParamFrom("b", []int{1}, []float64{0})
		setGrad(a, []float64{3})
		setGrad(b, []float64{4})
		if err := s.Step(Params(a, b)); err != nil {
			t.Fatal(err)
		}
		wantA, wantB := -3.0/5, -4.0/5
		if perTensor {
			wantA, wantB = -1, -1
		}
		if math.Abs(values(a)[0]-wantA) > 1e-15 || math.Abs(values(b)[0]-wantB) > 1e-15 {
			t.Errorf("per_tensor=%v: a = %v, b = %v, want %v, %v", perTensor, values(a), values(b), wantA, wantB)
		}
	}
}

func TestGClipZeroGradient(t *testing.T) {
	inner, _ := NewSGD(WithLR(1))
	s, _ := NewGClip(inner)
	p := NewParamFrom("x", []int{2}, []float64{1, 2})
	if err := s.Step(Params(p)); err != nil {
		t.Fatal(err)
	}
	if x := values(p); x[0] != 1 || x[1] != 2 {
		t.Fatalf("zero gradient moved the weights: %v", x)
	}
}

func TestGClipOverflowRefused(t *testing.T) {
	inner, _ := NewSGD(WithLR(1))
	s, _ := NewGClip(inner)
	p := NewParamFrom("x", []int{2}, []float64{1, 2})
	setGrad(p, []float64{1e200, 1e200})
	if err := s.Step(Params(p)); err == nil {
		t.Fatal("overflowing norm accepted")
	}
	if x := values(p); x[0] != 1 || x[1] != 2 {
		t.Fatal("refused step changed the weights")
	}
}

func gclipWrap(opts ...Option) func(Solver) (Solver, error) {
	return func(in Solver) (Solver, error) { return NewGClip(in, opts...) }
}

func TestGClipConvergence(t *testing.T) {
	wrapConverge(t, []wrapCase{
		{name: "gclip-sgd", inner: "sgd", wrap: gclipWrap(Set("gamma", 10), Set("delta", 0.01)), quad: 0.02, rosen: 1e-3, steps: 20000},
		{name: "gclip-adamw", inner: "adamw", wrap: gclipWrap(Set("gamma", 1)), quad: 0.05, rosen: 0.02, steps: 10000},
	})
}

func TestGClipNaN(t *testing.T) { wrapNaNPassesThrough(t, gclipWrap()) }

func TestGClipRoundTrip(t *testing.T) {
	for _, inner := range []string{"sgd", "adamw"} {
		wrapRoundTrip(t, func() (Solver, error) {
			return wrapCase{inner: inner, wrap: gclipWrap(Set("gamma", 0.5), Set("delta", 0.05))}.build(WithLR(0.01))
		}, false)
	}
}

func TestGClipNoAllocs(t *testing.T) {
	for _, pt := range []bool{false, true} {
		wrapNoAllocs(t, "gclip", func() (Solver, error) {
			return wrapCase{inner: "adamw", wrap: gclipWrap(SetFlag("per_tensor", pt))}.build(WithLR(0.01))
		})
	}
}

func TestGClipBadHyperparameters(t *testing.T) {
	bad := [][]Option{
		{Set("gamma", 0)}, {Set("gamma", -1)}, {Set("gamma", math.Inf(1))},
		{Set("delta", -0.1)}, {Set("delta", 1.5)}, {Set("delta", math.NaN())},
		{Set("per_tensor", 0.5)}, {Set("lr", 0.1)}, {Set("beta1", 0.9)},
	}
	for _, opts := range bad {
		inner, _ := NewSGD()
		if _, err := NewGClip(inner, opts...); err == nil {
			t.Errorf("accepted %v", opts)
		}
	}
	if _, err := NewGClip(nil); err == nil {
		t.Error("nil inner accepted")
	}
}
