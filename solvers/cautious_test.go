package solvers

import "testing"

func TestCautiousConvergence(t *testing.T) {
	foConverge(t, []foCase{
		{name: "cadamw", build: plain("cadamw"), quad: 0.05, rosen: 0.02, steps: 10000, matrix: true},
		{name: "cadamw-meanmask", build: plain("cadamw"), opts: []Option{SetFlag("mean_mask", true)}, quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "clion", build: plain("clion"), quad: 0.01, rosen: 1e-3, steps: 20000, matrix: true},
	})
}

// TestCautiousMask: coordinates whose momentum disagrees with the gradient do not move; the others move by
// numel/(nnz+1) times the AdamW step.
func TestCautiousMask(t *testing.T) {
	s, _ := NewCautiousAdamW(WithLR(0.1), SetFlag("correct_bias", false), WithEps(0))
	p := NewParamFrom("p", []int{3}, []float64{0, 0, 0})
	setGrad(p, []float64{1, 1, 1})
	_ = s.Step(Params(p))
	setGrad(p, []float64{-0.05, 1, 1}) // m_0 = 0.09 − 0.005 > 0 disagrees with g_0 < 0
	before := values(p)
	_ = s.Step(Params(p))
	after := values(p)
	if after[0] != before[0] || after[1] == before[1] || after[2] == before[2] {
		t.Errorf("cadamw mask: %v -> %v", before, after)
	}
	s2, _ := NewCautiousLion(WithLR(1))
	q := NewParamFrom("q", []int{4}, []float64{0, 0, 0, 0})
	setGrad(q, []float64{1, -1, 0, 2})
	_ = s2.Step(Params(q))
	// u = sign(0.1·g) = (1, −1, 0, 1); φ = (1, 1, 0, 1); scale 4/(3+1) = 1
	if x := values(q); x[0] != -1 || x[1] != 1 || x[2] != 0 || x[3] != -1 {
		t.Errorf("clion first step: %v", x)
	}
}

func TestCautiousStateRoundTrip(t *testing.T) {
	foRoundTrip(t, map[string]func() (Solver, error){
		"cadamw": func() (Solver, error) { return asSolver(NewCautiousAdamW(WithWeightDecay(0.01))) },
		"clion": func() (Solver, error) {
			return asSolver(NewCautiousLion(WithWeightDecay(0.1), SetFlag("mean_mask", true)))
		},
	})
}

func TestCautiousNoAllocs(t *testing.T) {
	foNoAllocs(t, map[string]func() (Solver, error){
		"cadamw": func() (Solver, error) { return asSolver(NewCautiousAdamW()) },
		"clion":  func() (Solver, error) { return asSolver(NewCautiousLion()) },
	})
}

func TestCautiousBadHyperparameters(t *testing.T) {
	foBad(t, map[string]func() (Solver, error){
		"cadamw beta1 1": func() (Solver, error) { return asSolver(NewCautiousAdamW(WithBetas(1, 0.9))) },
		"clion eps":      func() (Solver, error) { return asSolver(NewCautiousLion(WithEps(1e-8))) },
		"clion lr < 0":   func() (Solver, error) { return asSolver(NewCautiousLion(WithLR(-1))) },
	})
}
