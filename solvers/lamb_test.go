package solvers

import "testing"

func TestLAMBLARSConvergence(t *testing.T) {
	foConverge(t, []foCase{
		{name: "lamb", build: plain("lamb"), opts: []Option{WithWeightDecay(0)}, quad: 0.05, rosen: 0.02, steps: 10000, matrix: true},
		{name: "lamb-nvlamb", build: plain("lamb"), opts: []Option{WithWeightDecay(0), SetFlag("use_nvlamb", true), Set("max_grad_norm", 0)}, quad: 0.05, rosen: 0.02, steps: 10000, matrix: true},
		{name: "lars", build: plain("lars"), opts: []Option{WithWeightDecay(0)}, quad: 0.02, rosen: 1e-3, steps: 20000, matrix: true},
		{name: "lars-adapt", build: plain("lars"), opts: []Option{WithWeightDecay(0), SetFlag("always_adapt", true), Set("trust_coefficient", 1)}, quad: 0.05, rosen: 0.01, steps: 20000},
	})
}

// TestLAMBTrustRatio: with zero weights the trust ratio is 1 (plain Adam step of size lr), and a masked
// 1-D parameter is not adapted.
func TestLAMBTrustRatio(t *testing.T) {
	s, _ := NewLAMB(WithLR(0.1), Set("max_grad_norm", 0), WithDecayMask(NoDecayOnVectors))
	z := NewParamFrom("z", []int{2, 2}, []float64{0, 0, 0, 0})
	b := NewParamFrom("b", []int{2}, []float64{10, 10})
	setGrad(z, []float64{1, -1, 1, -1})
	setGrad(b, []float64{1, 1})
	if err := s.Step(Params(z, b)); err != nil {
		t.Fatal(err)
	}
	// first step: m̂/(√v̂ + eps) = ±1/(1 + 1e-6)
	want := 0.1 / (1 + 1e-6)
	if x := values(z); x[0] != -want || x[1] != want {
		t.Errorf("zero-norm tensor: %v, want ∓%v", x, want)
	}
	if x := values(b); x[0] != 10-want {
		t.Errorf("masked vector was adapted: %v", x)
	}
}

func TestLAMBLARSStateRoundTrip(t *testing.T) {
	foRoundTrip(t, map[string]func() (Solver, error){
		"lamb": func() (Solver, error) { return asSolver(NewLAMB(WithDecayMask(NoDecayOnVectors))) },
		"lamb-l2": func() (Solver, error) {
			return asSolver(NewLAMB(SetFlag("adam_w_mode", false), SetFlag("bias_correction", false)))
		},
		"lars": func() (Solver, error) {
			return asSolver(NewLARS(WithLR(0.1), WithNesterov(true), SetFlag("trust_clip", true)))
		},
	})
}

func TestLAMBLARSNoAllocs(t *testing.T) {
	foNoAllocs(t, map[string]func() (Solver, error){
		"lamb": func() (Solver, error) { return asSolver(NewLAMB()) },
		"lars": func() (Solver, error) { return asSolver(NewLARS()) },
	})
}

func TestLAMBLARSBadHyperparameters(t *testing.T) {
	foBad(t, map[string]func() (Solver, error){
		"lamb beta2 1":           func() (Solver, error) { return asSolver(NewLAMB(WithBetas(0.9, 1))) },
		"lamb max_grad_norm < 0": func() (Solver, error) { return asSolver(NewLAMB(Set("max_grad_norm", -1))) },
		"lars trust 0":           func() (Solver, error) { return asSolver(NewLARS(Set("trust_coefficient", 0))) },
		"lars nesterov no μ":     func() (Solver, error) { return asSolver(NewLARS(WithMomentum(0), WithNesterov(true))) },
		"lars dampening 2":       func() (Solver, error) { return asSolver(NewLARS(Set("dampening", 2))) },
	})
}
