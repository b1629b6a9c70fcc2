package solvers

import "testing"

func TestDoGConvergence(t *testing.T) {
	foConverge(t, []foCase{
		{name: "dog", build: plain("dog"), steps: 20000, matrix: true},
		{name: "ldog", build: plain("ldog"), steps: 20000, matrix: true},
	})
}

func TestDoGStateRoundTrip(t *testing.T) {
	foRoundTrip(t, map[string]func() (Solver, error){
		"dog":  func() (Solver, error) { return asSolver(NewDoG(WithWeightDecay(0.01))) },
		"ldog": func() (Solver, error) { return asSolver(NewLDoG(Set("init_eta", 1e-3))) },
	})
}

func TestDoGNoAllocs(t *testing.T) {
	foNoAllocs(t, map[string]func() (Solver, error){
		"dog":  func() (Solver, error) { return asSolver(NewDoG()) },
		"ldog": func() (Solver, error) { return asSolver(NewLDoG()) },
	})
}

func TestDoGBadHyperparameters(t *testing.T) {
	foBad(t, map[string]func() (Solver, error){
		"reps_rel 0":   func() (Solver, error) { return asSolver(NewDoG(Set("reps_rel", 0))) },
		"eps 0":        func() (Solver, error) { return asSolver(NewLDoG(WithEps(0))) },
		"init_eta < 0": func() (Solver, error) { return asSolver(NewDoG(Set("init_eta", -1))) },
		"wrong key":    func() (Solver, error) { return asSolver(NewDoG(WithMomentum(0.9))) },
	})
}
