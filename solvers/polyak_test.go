package solvers

import "testing"

func TestSPSConvergence(t *testing.T) {
	foConverge(t, []foCase{
		{name: "sps", build: plain("sps"), opts: []Option{Set("gamma_b", 1)}, steps: 20000, matrix: true},
		{name: "sps-smooth", build: plain("sps"), opts: []Option{SetFlag("smooth", true)}, steps: 20000},
	})
}

func TestSPSNeedsLoss(t *testing.T) {
	s, _ := NewSPS()
	p := NewParamFrom("p", []int{2}, []float64{1, 2})
	setGrad(p, []float64{1, 1})
	if err := s.Step(Params(p)); err == nil {
		t.Fatal("plain Step accepted")
	} else {
		t.Log(err)
	}
	if x := values(p); x[0] != 1 || x[1] != 2 {
		t.Fatal("refused step changed the weights")
	}
	// loss 1, ‖g‖² = 2, c = 0.5: γ = 1/(1 + 1e-8)
	if err := s.StepLoss(Params(p), 1); err != nil {
		t.Fatal(err)
	}
	one, eps := 1.0, 1e-8
	if g := s.StepSize(); g != one/(one+eps) {
		t.Errorf("γ = %v", g)
	}
}

func TestSPSStateRoundTrip(t *testing.T) {
	foRoundTrip(t, map[string]func() (Solver, error){
		"sps":        func() (Solver, error) { return asSolver(NewSPS(Set("gamma_b", 0.5))) },
		"sps-smooth": func() (Solver, error) { return asSolver(NewSPS(SetFlag("smooth", true), Set("init_step_size", 0.1))) },
	})
}

func TestSPSNoAllocs(t *testing.T) {
	foNoAllocs(t, map[string]func() (Solver, error){
		"sps": func() (Solver, error) { return asSolver(NewSPS()) },
	})
}

func TestSPSBadHyperparameters(t *testing.T) {
	foBad(t, map[string]func() (Solver, error){
		"c 0":           func() (Solver, error) { return asSolver(NewSPS(Set("c", 0))) },
		"gamma_b < 0":   func() (Solver, error) { return asSolver(NewSPS(Set("gamma_b", -1))) },
		"n_batches 0.5": func() (Solver, error) { return asSolver(NewSPS(Set("n_batches_per_epoch", 0.5))) },
	})
}
