package solvers

import (
	"gorgonia.org/tensor"
	"math"
	"testing"
)

// avgRun steps s n times on x (SGD lr 1, gradient −1 per step, so x_t = t from x_0 = 0).
func avgRun(t *testing.T, s Solver, p *Param, n int) {
	t.Helper()
	for k := 0; k < n; k++ {
		setGrad(p, []float64{-1})
		if err := s.Step(Params(p)); err != nil {
			t.Fatal(err)
		}
	}
}

func avgValue(t *testing.T, a interface {
	Averaged(string) (*tensor.Dense, error)
}, name string) float64 {
	t.Helper()
	d, err := a.Averaged(name)
	if err != nil {
		t.Fatal(err)
	}
	switch x := d.Data().(type) {
	case []float32:
		return float64(x[0])
	case []float64:
		return x[0]
	}
	panic("unreachable")
}

func TestEMASequence(t *testing.T) {
	cases := []struct {
		decay float64
		want  []float64 // averages after steps 1, 2, 3 (iterates 1, 2, 3)
	}{
		{0.5, []float64{1, 1.5, 2.25}}, // first update copies; then lerp with weight 0.5
		{0.9, []float64{1, 1.1, 1.29}}, // 1 + 0.1·(2 − 1); 1.1 + 0.1·(3 − 1.1)
		{0, []float64{1, 2, 3}},        // decay 0 tracks the weights exactly
		{1, []float64{1, 1, 1}},        // decay 1 freezes the first copy
	}
	for _, c := range cases {
		for _, dtype := range []string{"float32", "float64"} {
			inner, _ := NewSGD(WithLR(1))
			e, err := NewEMA(inner, Set("decay", c.decay))
			if err != nil {
				t.Fatal(err)
			}
			p := NewParamFrom("x", []int{1}, []float64{0})
			if dtype == "float32" {
				p = NewParamFrom("x", []int{1}, []float32{0})
			}
			for k, w := range c.want {
				avgRun(t, e, p, 1)
				tol := 1e-15
				if dtype == "float32" {
					tol = 1e-6
				}
				if got := avgValue(t, e, "x"); math.Abs(got-w) > tol {
					t.Errorf("decay %v %s step %d: average %v, want %v", c.decay, dtype, k+1, got, w)
				}
			}
			if e.Updates("x") != 3 || e.Steps() != 3 {
				t.Errorf("updates %d, steps %d", e.Updates("x"), e.Steps())
			}
		}
	}
}

func TestEMADecaySchedule(t *testing.T) {
	inner, _ := NewSGD()
	e, _ := NewEMA(inner, Set("decay", 0.99), SetFlag("use_warmup", true))
	// timm: s = t − 1; d = 1 − (1 + s)^(−2/3), capped at decay.
	if d := e.DecayAt(1); d != 0 {
		t.Errorf("d_1 = %v, want 0", d)
	}
	if d, want := e.DecayAt(2), 1-math.Pow(2, -2.0/3); math.Abs(d-want) > 1e-15 {
		t.Errorf("d_2 = %v, want %v", d, want)
	}
	if d, want := e.DecayAt(9), 1-1/math.Cbrt(81); math.Abs(d-want) > 1e-15 { // 9^(−2/3) = 81^(−1/3)
		t.Errorf("d_9 = %v, want %v", d, want)
	}
	if d := e.DecayAt(1e6); d != 0.99 {
		t.Errorf("d_1e6 = %v, want the cap 0.99", d)
	}
	e2, _ := NewEMA(inner, Set("decay", 0.9), Set("update_after_step", 3))
	for tt, want := range map[int64]float64{1: 0, 4: 0, 5: 0.9, 100: 0.9} {
		if d := e2.DecayAt(tt); d != want {
			t.Errorf("update_after_step 3: d_%d = %v, want %v", tt, d, want)
		}
	}
}

func TestSWASequence(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		inner, _ := NewSGD(WithLR(1))
		s, err := NewSWA(inner, Set("swa_start", 2), Set("swa_c_steps", 2))
		if err != nil {
			t.Fatal(err)
		}
		p := NewParamFrom("x", []int{1}, []float64{0})
		if dtype == "float32" {
			p = NewParamFrom("x", []int{1}, []float32{0})
		}
		avgRun(t, s, p, 1)
		if _, err := s.Averaged("x"); err == nil {
			t.Fatal("average before swa_start")
		}
		avgRun(t, s, p, 6) // averages the iterates of steps 2, 4, 6: (2 + 4 + 6)/3 = 4
		if got := avgValue(t, s, "x"); math.Abs(got-4) > 1e-6 {
			t.Fatalf("%s: SWA average %v, want 4", dtype, got)
		}
		if s.Updates("x") != 3 {
			t.Fatalf("%d models averaged, want 3", s.Updates("x"))
		}
	}
	// Equal weights: start 1, every step, iterates 1..10 average to 5.5.
	inner, _ := NewSGD(WithLR(1))
	s, _ := NewSWA(inner)
	p := NewParamFrom("x", []int{1}, []float64{0})
	avgRun(t, s, p, 10)
	if got := avgValue(t, s, "x"); math.Abs(got-5.5) > 1e-14 {
		t.Fatalf("average of 1..10 = %v", got)
	}
}

// TestAveragingSwapRoundTrip: swapping the averages in and back is bit-exact, stepping and saving are
// refused meanwhile, and the trajectory after swapping back equals one that never swapped.
func TestAveragingSwapRoundTrip(t *testing.T) {
	builds := map[string]func() (Solver, error){
		"ema": func() (Solver, error) { a, _ := NewAdamW(WithLR(0.01)); return NewEMA(a, Set("decay", 0.9)) },
		"swa": func() (Solver, error) {
			a, _ := NewSGD(WithLR(0.01), WithMomentum(0.9))
			return NewSWA(a, Set("swa_start", 3))
		},
	}
	for name, build := range builds {
		for _, dtype := range []string{"float32", "float64"} {
			m, ref := newTestModel(dtype, 3), newTestModel(dtype, 3)
			s, _ := build()
			sr, _ := build()
			for k := 0; k < 6; k++ {
				m.fillGrads()
				ref.fillGrads()
				if err := s.Step(Params(m.ps...)); err != nil {
					t.Fatal(err)
				}
				if err := sr.Step(Params(ref.ps...)); err != nil {
					t.Fatal(err)
				}
			}
			w := m.snapshot()
			sw := s.(averagedSwapper)
			if err := sw.SwapAveraged(Params(m.ps...)); err != nil {
				t.Fatal(err)
			}
			for i, p := range m.ps {
				d, _ := sr.(interface {
					Averaged(string) (*tensor.Dense, error)
				}).Averaged(p.Name())
				if !sameBits([][]float64{values(p)}, [][]float64{values(NewParam("t", d, nil))}) {
					t.Fatalf("%s/%s: parameter %d does not hold its average after the swap", name, dtype, i)
				}
			}
			m.fillGrads()
			ref.fillGrads() // keep the noise streams in step (these gradients are overwritten below)
			if err := s.Step(Params(m.ps...)); err == nil {
				t.Fatalf("%s: step accepted while swapped", name)
			}
			if err := SaveState(discard{}, s); err == nil {
				t.Fatalf("%s: save accepted while swapped", name)
			}
			if err := sw.SwapAveraged(Params(m.ps...)); err != nil {
				t.Fatal(err)
			}
			if !sameBits(w, m.snapshot()) {
				t.Fatalf("%s/%s: swap round trip changed the weights", name, dtype)
			}
			if string(stateBytesOf(t, s)) != string(stateBytesOf(t, sr)) {
				t.Fatalf("%s/%s: swap round trip changed the state", name, dtype)
			}
			for k := 0; k < 4; k++ {
				m.fillGrads()
				ref.fillGrads()
				if err := s.Step(Params(m.ps...)); err != nil {
					t.Fatal(err)
				}
				if err := sr.Step(Params(ref.ps...)); err != nil {
					t.Fatal(err)
				}
			}
			if !sameBits(m.snapshot(), ref.snapshot()) {
				t.Fatalf("%s/%s: trajectory differs after a swap round trip", name, dtype)
			}
		}
	}
	// A parameter without an average: nothing is swapped.
	inner, _ := NewSGD(WithLR(1))
	s, _ := NewSWA(inner, Set("swa_start", 5))
	p := NewParamFrom("x", []int{1}, []float64{0})
	avgRun(t, s, p, 2)
	if err := s.SwapAveraged(Params(p)); err == nil || s.Swapped() || values(p)[0] != 2 {
		t.Fatal("swap without an average")
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// TestAveragingConverges: around SGD and AdamW the training iterate converges and so does its average.
func TestAveragingConverges(t *testing.T) {
	wraps := map[string]func(Solver) (Solver, error){
		"ema": func(in Solver) (Solver, error) { return NewEMA(in, Set("decay", 0.9)) },
		"swa": func(in Solver) (Solver, error) { return NewSWA(in, Set("swa_start", 1500), Set("swa_c_steps", 5)) },
	}
	for name, wrap := range wraps {
		var cases []wrapCase
		for _, inner := range []string{"sgd", "adamw"} {
			lr := map[string]float64{"sgd": 0.02, "adamw": 0.05}[inner]
			rosen := map[string]float64{"sgd": 1e-3, "adamw": 0.02}[inner]
			cases = append(cases, wrapCase{name: name + "-" + inner, inner: inner, wrap: wrap, quad: lr, rosen: rosen, steps: 20000})
		}
		wrapConverge(t, cases)
		// The average itself is near the optimum of the quadratic.
		for _, c := range cases {
			s, _ := c.build(WithLR(c.quad))
			minimize(t, s, quadratic(), "float64", 2000)
			d, err := s.(interface {
				Averaged(string) (*tensor.Dense, error)
			}).Averaged("x")
			if err != nil {
				t.Fatal(err)
			}
			if x := d.Float64s(); !quadratic().done(x) {
				t.Errorf("%s: average %v not at the optimum", c.name, x)
			}
		}
	}
}

func TestAveragingNaN(t *testing.T) {
	for _, wrap := range []func(Solver) (Solver, error){
		func(in Solver) (Solver, error) { return NewEMA(in) },
		func(in Solver) (Solver, error) { return NewSWA(in) },
	} {
		wrapNaNPassesThrough(t, wrap)
	}
	// Under SkipNonFinite the skipped step is not averaged nor counted.
	inner, _ := NewSGD(WithLR(1), WithNonFinite(SkipNonFinite))
	e, _ := NewEMA(inner, Set("decay", 0.5))
	p := NewParamFrom("x", []int{1}, []float64{0})
	avgRun(t, e, p, 2)
	setGrad(p, []float64{math.NaN()})
	if err := e.Step(Params(p)); err != nil {
		t.Fatal(err)
	}
	if e.Steps() != 2 || e.Updates("x") != 2 || avgValue(t, e, "x") != 1.5 {
		t.Fatalf("skipped step averaged: steps %d, updates %d, avg %v", e.Steps(), e.Updates("x"), avgValue(t, e, "x"))
	}
}

func TestAveragingRoundTrip(t *testing.T) {
	for _, inner := range []string{"sgd", "adamw"} {
		wrapRoundTrip(t, func() (Solver, error) {
			return wrapCase{inner: inner, wrap: func(in Solver) (Solver, error) {
				return NewEMA(in, Set("decay", 0.7), SetFlag("use_warmup", true))
			}}.build(WithLR(0.01))
		}, true)
		wrapRoundTrip(t, func() (Solver, error) {
			return wrapCase{inner: inner, wrap: func(in Solver) (Solver, error) {
				return NewSWA(in, Set("swa_start", 3), Set("swa_c_steps", 2))
			}}.build(WithLR(0.01))
		}, true)
	}
}

func TestAveragingNoAllocs(t *testing.T) {
	wrapNoAllocs(t, "ema", func() (Solver, error) {
		return wrapCase{inner: "adamw", wrap: func(in Solver) (Solver, error) { return NewEMA(in, SetFlag("use_warmup", true)) }}.build(WithLR(0.01))
	})
	wrapNoAllocs(t, "swa", func() (Solver, error) {
		return wrapCase{inner: "sgd", wrap: func(in Solver) (Solver, error) { return NewSWA(in) }}.build(WithLR(0.01))
	})
}

func TestAveragingBadHyperparameters(t *testing.T) {
	inner, _ := NewSGD()
	for _, opts := range [][]Option{
		{Set("decay", 1.5)}, {Set("decay", -0.1)}, {Set("min_decay", 2)}, {Set("update_after_step", -1)},
		{Set("update_after_step", 1.5)}, {Set("warmup_gamma", 0)}, {Set("warmup_power", -1)},
		{Set("use_warmup", 3)}, {Set("swa_start", 1)},
	} {
		if _, err := NewEMA(inner, opts...); err == nil {
			t.Errorf("ema accepted %v", opts)
		}
	}
	for _, opts := range [][]Option{
		{Set("swa_start", 0)}, {Set("swa_start", 2.5)}, {Set("swa_c_steps", 0)}, {Set("swa_c_steps", -3)}, {Set("decay", 0.9)},
	} {
		if _, err := NewSWA(inner, opts...); err == nil {
			t.Errorf("swa accepted %v", opts)
		}
	}
	if _, err := NewEMA(nil); err == nil {
		t.Error("ema: nil inner accepted")
	}
	if _, err := NewSWA(nil); err == nil {
		t.Error("swa: nil inner accepted")
	}
}
