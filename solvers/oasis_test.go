package solvers

import (
	"math"
	"testing"
)

func TestOASISConvergence(t *testing.T) {
	curvConvergence(t, []curvCase{{
		name:  "oasis",
		build: plain("oasis"),
		lr:    map[string]float64{"quadratic": 0.01, "rosenbrock": 0.01, "logistic": 0.01},
		steps: map[string]int{"quadratic": 100, "rosenbrock": 3000, "logistic": 100},
		fixed: true,
	}, {
		name:  "oasis-fixed-lr",
		build: plain("oasis"),
		opts:  []Option{SetFlag("adaptive_lr", false)},
		lr:    map[string]float64{"quadratic": 0.5, "rosenbrock": 0.05, "logistic": 0.5},
		// no Rosenbrock: the fixed-step variant stalls in the valley (f ≈ 0.08 after 10⁴ steps at lr 0.05);
		// the adaptive step above converges there
		steps: map[string]int{"quadratic": 300, "logistic": 300},
		fixed: true,
	}})
}

func TestOASISStateRoundTrip(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		r := roundTrip(t, func() (Solver, error) {
			return NewOASIS(WithLR(0.05), Set("warmup", 3), Set("seed", 5), Set("alpha", 1e-3))
		}, dtype, 4, 3, nil, curvClosureStep)
		size := 4
		if dtype == "float64" {
			size = 8
		}
		if got, want := r.resumed.StateBytes(), int64(2*size*27); got != want {
			t.Fatalf("StateBytes %d, want %d", got, want)
		}
	}
	// round trip across the first step, where θ = +∞ is saved
	roundTrip(t, func() (Solver, error) { return NewOASIS(WithLR(0.05)) }, "float64", 1, 2, nil, curvClosureStep)
}

func TestOASISOptions(t *testing.T) {
	for _, o := range [][]Option{{Set("alpha", 0)}, {Set("beta2", 1)}, {Set("warmup", 0)}, {WithLR(-1)}, {Set("seed", 0.5)}, {WithWeightDecay(0.1)}} {
		if _, err := NewOASIS(o...); err == nil {
			t.Fatalf("options %v accepted", o)
		}
	}
	s, _ := NewOASIS()
	tm := newTestModel("float32", 1)
	if err := s.Step(Params(tm.ps...)); err == nil {
		t.Fatal("Step without a closure accepted")
	}
	before := tm.snapshot()
	_, err := s.StepClosure(Params(tm.ps...), func() (float64, error) {
		setGrad(tm.ps[1], []float64{math.NaN(), 0, 0})
		return 0, nil
	})
	if err == nil || !sameBits(before, tm.snapshot()) || s.StateBytes() != 0 {
		t.Fatalf("non-finite gradient: err %v, weights or state changed", err)
	}
	if _, err := s.StepClosure(Params(tm.ps...), curvModelClosure(tm)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StepClosure(Params(tm.ps[:2]...), curvModelClosure(tm)); err == nil {
		t.Fatal("a subset of the parameters was accepted")
	}
}
